"""The review screen's adaptation rules, without an app: when to run, one run at a time."""

from __future__ import annotations

from types import SimpleNamespace

from nsfw_tui.tui.adaptation import AdaptationController


def controller(auto_every: int | None) -> AdaptationController:
    settings = None if auto_every is None else SimpleNamespace(auto_every=auto_every)
    return AdaptationController(lambda: settings)


def test_every_n_saved_labels_and_the_count_starts_again():
    c = controller(4)
    assert [c.labels_saved(1) for _ in range(3)] == [False, False, False]
    assert c.labels_saved(1)
    assert c.start() is not None and c.labels_since == 0 and c.running


def test_zero_means_only_on_request_and_no_settings_means_never():
    c = controller(0)
    assert not c.labels_saved(100)
    assert c.start() is not None  # `A` still adapts
    off = controller(None)
    assert not off.labels_saved(100) and off.start() is None and not off.running


def test_one_run_at_a_time_and_one_more_if_asked_meanwhile():
    c = controller(2)
    assert c.start() is not None
    assert c.start() is None and c.again  # asked while running: remembered, not started
    assert c.labels_saved(2) and c.start() is None
    assert c.finished() is True and not c.running  # the screen starts the one more run
    assert c.start() is not None
    assert c.finished() is False


def test_settings_load_once_even_when_they_cannot_be_had():
    calls = []

    def load():
        calls.append(1)
        return None  # a bad config: said once by the screen, then adaptation is off

    c = AdaptationController(load)
    for _ in range(3):
        c.labels_saved(5)
        c.start()
    assert calls == [1]
