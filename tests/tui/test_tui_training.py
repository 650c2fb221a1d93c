"""The training screen driven by Pilot: start, live progress, comparison, activate."""

from __future__ import annotations

import pytest
from support.trainer import FAST, home_for, labelled_store
from support.tui import settle, wait_for
from textual.widgets import Sparkline, Static
from textual_image.widget import HalfcellImage

from nsfw_tui.core.scan import ScanOptions
from nsfw_tui.core.store import Store
from nsfw_tui.tui.app import make_app
from nsfw_tui.tui.screens.review import ReviewScreen
from nsfw_tui.tui.screens.training import TrainingScreen
from nsfw_tui.tui.settings import ReviewSettings


@pytest.mark.slow
async def test_training_screen_trains_compares_and_activates(tmp_path):
    store_path = labelled_store(tmp_path, n_nsfw=12, n_sfw=12)
    home = home_for(store_path)
    settings = ReviewSettings(
        scan_options=ScanOptions(workers=0),
        image_class=HalfcellImage,
        train_overrides=(*FAST, "training.max_epochs=2", "training.batch_size=8"),
    )
    app = make_app(tmp_path / "data", home=home, settings=settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, timeout=60)
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, TrainingScreen)
        summary = str(screen.query_one("#train-summary", Static).render())
        assert "12 NSFW, 12 SFW" in summary and "config:" in summary
        await pilot.press("b")  # the baseline: ConvNext would want ImageNet weights
        assert screen.config_name == "config_baseline"
        await pilot.press("enter")
        assert screen.running or screen.result is not None
        await wait_for(pilot, lambda: screen.result is not None, timeout=120)
        result = screen.result
        assert result.status == "done", result.message
        assert len(screen.query_one("#auroc-chart", Sparkline).data) == 2  # one per epoch
        assert len(screen.query_one("#loss-chart", Sparkline).data) == 2
        # The new model and the active one, scored on the same validation images.
        compared = screen.comparison
        assert compared.active_id == "open_nsfw"
        assert compared.new["n"] == compared.active["n"] == len(result.val_hashes)
        assert compared.new["auroc"] is not None and compared.active["auroc"] is not None
        # Leaving and coming back keeps the result; the review screen is still usable.
        await pilot.press("escape")
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("down", "t")
        await pilot.press("a")

        def active() -> str:
            with Store.open(home.store_path, check=False) as store:
                return store.active_model().id

        await wait_for(pilot, lambda: active() == result.model_id, timeout=30)
        line = f"active model: open_nsfw -> {result.model_id}"
        await wait_for(pilot, lambda: any(line in str(n.message) for n in app._notifications))
