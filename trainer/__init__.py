"""Training, checkpoints and model loading; imports nsfw_tui.core only, never the UI."""
