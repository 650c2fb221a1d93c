"""The domain: configs, home, image loading, store, scorers, scanning. No UI imports here."""
