"""The active model never changes unannounced: the review screen names it, commands print it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.trainer import FAST, labelled_store
from support.tui import FAKE_ID, RedScorer, make_test_app, scene_folder, settle, wait_for
from textual.widgets import OptionList
from typer.testing import CliRunner

from nsfw_tui.cli import app as cli_app
from nsfw_tui.core.active_model import change_line
from nsfw_tui.core.store import ModelRow, Store
from nsfw_tui.tui.widgets.status_bar import StatusBar

HEAD = "adapted-0123456789"
FITTED = {"nsfw": 7, "sfw": 5}

runner = CliRunner()


def run(*args: str, home: Path):
    return runner.invoke(cli_app, [*args, "--home", str(home)], catch_exceptions=False)


def add_head(store_path: Path, activate: bool = True) -> None:
    """An adapted head as `adapt` registers it: its label counts in the row's meta."""
    with Store.open(store_path) as store:
        store.add_model(
            HEAD,
            "adapted",
            threshold=0.5,
            path="/models/head.npz",
            meta={"labels": FITTED, "head": "logreg"},
            activate=activate,
        )


def status(screen) -> str:
    return str(screen.query_one(StatusBar).content)


# -- the review screen -------------------------------------------------------------------------


async def test_opening_a_folder_names_the_adapted_model_and_its_labels(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos", scorers=[RedScorer(HEAD)])
    add_head(app.home.store_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot)
        assert f"model {HEAD} (fitted on 12 labels)" in status(screen)
        said = (
            "information",
            "Active model",
            f"{HEAD}, fitted on 12 labels (7 NSFW, 5 SFW); m picks another.",
        )
        assert said in app.notes

        await pilot.press("m")  # switching says from what to what; the bar follows
        options = app.screen.query_one(OptionList)
        options.highlighted = options.get_option_index(FAKE_ID)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model_name == FAKE_ID)
        await settle(pilot)
        assert ("information", "", f"active model: {HEAD} -> {FAKE_ID}") in app.notes
        assert f"model {FAKE_ID}  threshold" in status(screen)
        assert "fitted on" not in status(screen)
    assert sum(title == "Active model" for _, title, _ in app.notes) == 1  # once, on opening


async def test_another_model_opens_without_a_notice(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot)
        assert f"model {FAKE_ID}  threshold" in status(screen)
    assert not any(title == "Active model" for _, title, _ in app.notes)


# -- the commands ------------------------------------------------------------------------------


def test_models_use_prints_the_change(tmp_path):
    home = tmp_path / "home"
    same = run("models", "use", "open_nsfw", home=home)
    assert "active model: open_nsfw (unchanged)" in same.output
    add_head(home / "store.db", activate=False)
    to_head = run("models", "use", HEAD, home=home)
    assert to_head.exit_code == 0, to_head.output
    assert f"active model: open_nsfw -> {HEAD}, fitted on 12 labels (7 NSFW, 5 SFW)" in (
        to_head.output
    )
    back = run("models", "use", "open_nsfw", home=home)
    assert f"active model: {HEAD} -> open_nsfw\n" in back.output
    bad = runner.invoke(cli_app, ["models", "use", "nope", "--home", str(home)])
    assert bad.exit_code == 2 and "active model" not in bad.output


def test_calibrate_prints_the_active_model_line(scored_home):
    active = run("calibrate", "--target-recall", "0.75", home=scored_home)
    assert active.exit_code == 0, active.output
    assert "active model: open_nsfw -> open_nsfw (threshold 0.2 -> 0.35)" in active.output
    add_head(scored_home / "store.db")  # calibrating another model leaves the active one be
    again = run("calibrate", "--model", "open_nsfw", "--target-recall", "1.0", home=scored_home)
    assert again.exit_code == 0, again.output
    assert f"active model: {HEAD}, fitted on 12 labels (7 NSFW, 5 SFW) (unchanged)" in (
        again.output
    )


def test_train_activate_prints_the_change(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written relative to the working folder lands here
    store_path = labelled_store(tmp_path, 5, 5)
    args = ["train", "--config-name", "baseline", *FAST, "training.max_epochs=1"]
    kept = run(*args, home=store_path.parent)
    assert kept.exit_code == 0, kept.output
    assert "active model: open_nsfw (unchanged)" in kept.output
    activated = run(*args, "--activate", home=store_path.parent)
    assert activated.exit_code == 0, activated.output
    with Store.open(store_path, check=False) as store:
        new = store.active_model().id
    assert new != "open_nsfw" and f"active model: open_nsfw -> {new}\n" in activated.output


@pytest.mark.parametrize(
    ("before", "after", "line"),
    [
        (None, "a", "active model: none -> a"),
        ("a", "b", "active model: a -> b"),
        ("a", "a", "active model: a (unchanged)"),
    ],
)
def test_change_line(before, after, line):
    def row(model_id: str | None) -> ModelRow | None:
        if model_id is None:
            return None
        return ModelRow(model_id, "onnx", None, 0.5, {}, None, {}, 0.0, True)

    assert change_line(row(before), row(after)) == line
