"""The apps provide everything their screens reach through the typed ``host`` property."""

from __future__ import annotations

from support.tui import RedScorer, make_test_app

from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.watch import WatchOptions
from nsfw_tui.tui.host import ReviewHost, TrainingHost, WatchHost
from nsfw_tui.tui.settings import WatchSettings
from nsfw_tui.tui.watch_app import make_watch_app


def test_the_review_app_hosts_the_review_and_training_screens(tmp_path):
    app = make_test_app(tmp_path, tmp_path / "photos")
    assert isinstance(app, ReviewHost) and isinstance(app, TrainingHost)
    assert not isinstance(app, WatchHost)


def test_the_watch_app_hosts_every_screen(tmp_path):
    settings = WatchSettings(scorer=RedScorer(), threshold=0.5, options=WatchOptions())
    app = make_watch_app(
        tmp_path / "inbox", home=resolve_home(tmp_path / "home"), settings=settings
    )
    assert isinstance(app, ReviewHost) and isinstance(app, TrainingHost)
    assert isinstance(app, WatchHost) and app.dry_run is False
