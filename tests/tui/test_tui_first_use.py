"""What a new user met first on the screens: missing extras, read-only stores, counts."""

from __future__ import annotations

import importlib.util

import pytest
from support.tui import (
    RedScorer,
    labels_by_name,
    make_readonly,
    make_test_app,
    row_text,
    scene_folder,
    screen_text,
    settle,
    solid,
    wait_for,
)
from textual.widgets import OptionList, Static

from nsfw_tui.core.store import Store
from nsfw_tui.tui.screens.dialogs import ModelScreen
from nsfw_tui.tui.screens.review import ReviewScreen
from nsfw_tui.tui.screens.training import TrainingScreen
from nsfw_tui.tui.widgets.folder_tree import FolderTree


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


async def test_the_folder_tree_labels_its_counts_and_cuts_names_not_counts(tmp_path):
    long = "a_folder_name_far_too_long_for_the_tree_panel"
    solid(tmp_path / "photos" / "red.png", 230)  # 0.902: an NSFW call
    solid(tmp_path / "photos" / long / "blue.png", 20)
    solid(tmp_path / "photos" / long / "pink.png", 200)  # 0.784: an NSFW call
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("n")  # the first row (blue.png) labelled; the model called two NSFW
        await wait_for(pilot, lambda: labels_by_name(app.home) == {"blue.png": "nsfw"})
        await pilot.pause(0.1)
        tree = app.screen.query_one(FolderTree)
        assert tree.border_title == "img · model NSFW · labels"
        lines = [line.split("│")[0].rstrip() for line in screen_text(app).splitlines()[:4]]
        assert "img · model NSFW · labels" in lines[0]
        assert lines[1].endswith("photos  3 · 2 · 1")
        assert lines[2].endswith("…  2 · 1 · 1")  # the name is cut, never the counts
        assert "a_folder_name" in lines[2]


async def test_the_model_picker_starts_on_the_active_model(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos", scorers=[RedScorer("fake2", inverse=True)])
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot)
        await pilot.press("m")
        assert isinstance(app.screen, ModelScreen)
        options = app.screen.query_one(OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert ids.index("fake") > 0, "the active model is not first: the test can tell"
        assert options.get_option_at_index(options.highlighted).id == "fake"
        await pilot.press("enter")  # keeps the active model: nothing is rescored
        await pilot.pause(0.1)
        assert isinstance(app.screen, ReviewScreen) and screen.model_name == "fake"
        assert app.scorers["fake2"].calls == 0


async def test_rescan_says_what_changed_even_when_nothing_did(tmp_path, scenes):
    root = tmp_path / "photos"
    app = make_test_app(tmp_path, root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert app.notes[-1] == ("information", "Rescan", f"Nothing changed in {root}.")
        solid(root / "new.png", 10)
        (root / "lake.png").unlink()
        await pilot.press("r")
        await settle(pilot)
        assert app.notes[-1] == ("information", "Rescan", f"{root}: 1 new, 1 gone, 1 to score.")


async def test_stats_say_one_labelled_image(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: len(labels_by_name(app.home)) == 1)
        await pilot.pause(0.1)
        await pilot.press("i")
        assert "1 labelled image, 1 of them scored" in screen_text(app)


async def test_the_training_summary_names_the_config_file_once(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        summary = str(app.screen.query_one("#train-summary", Static).render())
        assert "config:   config.yaml: model convnext_tiny" in summary
        await pilot.press("b")
        summary = str(app.screen.query_one("#train-summary", Static).render())
        assert "config:   config_baseline.yaml: model " in summary


async def test_help_wraps_a_long_description_under_itself(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        lines = screen_text(app).splitlines()
        [first] = [line for line in lines if "filter: all, unlabelled" in line]
        [wrapped] = [line for line in lines if "uncertain, errors" in line]
        assert wrapped.index("uncertain, errors") > first.index("filter:") - 1
        column = first.index("filter:")
        assert wrapped[column - 1] == " " and wrapped[column] != " "


async def test_an_error_reason_fills_the_row_and_shows_whole_in_the_details(tmp_path):
    from support.imagegen import truncated_jpeg

    (tmp_path / "photos").mkdir()
    truncated_jpeg(tmp_path / "photos" / "broken.jpg", 0.3)
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot)
        [row] = screen.review.rows
        reason = row.error
        assert reason.startswith("truncated: JPEG file is incomplete") and len(reason) > 27
        shown = row_text(screen, 0)
        assert "truncated: JPEG file is i… error" in shown  # the call and label columns too
        await wait_for(pilot, lambda: "end-of-image" in screen_text(app))
        details = " ".join(line.split("│")[-1].strip() for line in screen_text(app).splitlines())
        assert f"status {reason}" in " ".join(details.split())  # wrapped, never cut
