"""What a new user met first on the screens: missing extras, read-only stores, counts."""

from __future__ import annotations

import importlib.util

import pytest
from support.tui import make_readonly, make_test_app, scene_folder, screen_text, settle, wait_for
from textual.widgets import Static

from nsfw_tui.core.store import Store
from nsfw_tui.tui.screens.training import TrainingScreen


@pytest.fixture
def scenes(tmp_path) -> dict[str, float]:
    return scene_folder(tmp_path / "photos")


async def test_training_without_the_extra_names_it(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, TrainingScreen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.result is not None)
        shown = str(screen.query_one("#train-result", Static).render())
        assert shown == (
            "Run failed: training needs the train extra (torch is not installed): "
            "pip install 'nsfw-tui[train]'"
        )


async def test_a_read_only_store_scores_in_memory_and_says_nothing_is_saved(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    make_readonly(app.home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot)  # nothing stays pending
        assert {r.name: r.probability for r in screen.review.rows} == scenes
        [(severity, title, message)] = app.notes
        assert (severity, title) == ("warning", "Read-only store")
        assert message.startswith(
            "Nothing is saved: scores are kept in memory only and labels are refused. "
            f"the store {app.home.store_path} was written by a newer nsfw-tui"
        )
        assert "Error" not in screen_text(app)  # no exception class names anywhere
    with Store.open(app.home.store_path, check=False) as store:
        assert store.counts()["predictions"] == 0
