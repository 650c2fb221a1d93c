"""What a new user met first on the screens: missing extras, read-only stores, counts."""

from __future__ import annotations

import importlib.util

from support.tui import make_test_app, scene_folder, settle, wait_for
from textual.widgets import Static

from nsfw_tui.tui.screens.training import TrainingScreen


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
