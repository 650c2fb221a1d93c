"""The training screen compares the new model with the active one only on images neither saw."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console
from support.scores import S, scored_store
from support.tui import record_notes, settle, wait_for
from textual.widgets import Static
from textual_image.widget import HalfcellImage

from nsfw_tui.core.home import Home
from nsfw_tui.core.scan import ScanOptions
from nsfw_tui.core.store import Store
from nsfw_tui.tui.app import make_app
from nsfw_tui.tui.screens.training import TrainingScreen
from nsfw_tui.tui.settings import ReviewSettings

SHAS = [f"{i:064x}" for i in range(len(S))]  # support.scores: 0-3 NSFW, 4-9 SFW
NEW_VAL = [SHAS[0], SHAS[1], SHAS[4], SHAS[5]]
MADE = "Training finished: press a to make the new model active and rescore."


def trained_model(store: Store, model_id: str, val: list[str] | None) -> None:
    """A checkpoint row scoring support.scores' S, with a run recording ``val``."""
    meta = {"run_id": f"run-{model_id}"} if val is not None else {}
    store.add_model(model_id, "checkpoint", threshold=0.2, path="/nowhere", meta=meta)
    store.put_predictions(model_id, {s: (p, 1) for s, p in zip(SHAS, S, strict=True)})
    if val is not None:
        store.insert_run(f"run-{model_id}", {}, {}, val)


@pytest.fixture
def finished(home, tmp_path, monkeypatch):
    """Runs the training screen against a fake training run; returns the comparison shown."""
    import trainer.run as run

    warning = ""

    def fake_train(store_path, home_, cfg, **_):
        with Store.open(store_path) as store:
            trained_model(store, "new", NEW_VAL)
        result = run.RunResult("run-new", "done", "new", 0.2, 1, {}, [], NEW_VAL, None, {})
        result.warning = warning
        return result

    monkeypatch.setattr(run, "train", fake_train)

    async def finish(active: str, active_val: list[str] | None, warn: str = ""):
        nonlocal warning
        warning = warn
        scored_store(home)
        with Store.open(home / "store.db") as store:
            trained_model(store, active, active_val)
            store.set_active(active)
        (tmp_path / "data").mkdir()
        settings = ReviewSettings(
            scan_options=ScanOptions(workers=0),
            image_class=HalfcellImage,
            scorer_factory=lambda row: SimpleNamespace(id=row.id),
        )
        app = record_notes(make_app(tmp_path / "data", home=Home(home), settings=settings))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, timeout=30)
            await pilot.press("t")
            screen = app.screen
            assert isinstance(screen, TrainingScreen)
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.comparison is not None, timeout=30)
            await pilot.pause()
            console = Console(width=120, record=True, file=io.StringIO())
            console.print(screen.query_one("#train-result", Static).content)
            finish.notes = app.notes
            return screen.comparison, " ".join(console.export_text().split())

    return finish


async def test_only_validation_images_neither_model_was_fitted_on_are_compared(finished):
    # the active model's run validated on 0, 4 and 7: of the new run's, 0 and 4 are new to both
    compared, shown = await finished("old", [SHAS[0], SHAS[4], SHAS[7]])
    assert compared.why == "" and compared.compared == 2
    assert compared.new["n"] == compared.active["n"] == 2
    assert "2 of this run's 4 validation images, fitted on by neither model" in shown
    assert "active: old" in shown
    assert "warning:" not in shown
    assert ("information", "", MADE) in finished.notes


async def test_an_active_model_without_recorded_validation_images_cannot_be_compared(finished):
    compared, shown = await finished("imported", None)
    assert compared.active == {} and compared.new["n"] == 4
    assert "The 4 validation images of this run" in shown
    assert (
        "cannot compare with imported: imported records no validation images, so the images "
        "it was fitted on are unknown" in shown
    )


async def test_no_image_of_one_class_left_cannot_be_compared(finished):
    compared, shown = await finished("old", [SHAS[0], SHAS[1], SHAS[8]])
    assert compared.active == {}
    assert (
        "cannot compare with old: 2 of the 4 validation images are new to old too, not NSFW "
        "and SFW both" in shown
    )


async def test_a_threshold_that_flags_too_many_sfw_images_is_warned_of_apart(finished):
    why = (
        "at threshold 0.2 the model flags 50% of the validation SFW images (false alarm rate "
        "0.5 > metrics.max_val_fpr 0.2); registered, not made active"
    )
    _, shown = await finished("old", [SHAS[0], SHAS[4], SHAS[7]], warn=why)
    assert f"warning: {why}" in shown
    (note,) = [n for n in finished.notes if n[2].startswith("Training finished")]
    assert note[0] == "warning" and "flags too many SFW images" in note[2]
