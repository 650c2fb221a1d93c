"""The review screen driven by Pilot: keys, workers, the store behind it, hostile names."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image
from support.imagegen import high_frequency, noisy, truncated_jpeg
from support.tui import (
    FAKE_ID,
    RedScorer,
    labels_by_name,
    labels_by_sha,
    make_readonly,
    make_test_app,
    prefill,
    review_screen,
    row_text,
    scene_folder,
    screen_text,
    settle,
    sha_of,
    solid,
    wait_for,
)
from textual.widgets import OptionList
from typer.testing import CliRunner

from nsfw_tui.cli import app as cli_app
from nsfw_tui.core.store import Store
from nsfw_tui.tui.screens.dialogs import ConfirmScreen, HelpScreen, ModelScreen
from nsfw_tui.tui.screens.review import ReviewScreen
from nsfw_tui.tui.screens.stats import StatsScreen
from nsfw_tui.tui.widgets.folder_tree import FolderTree
from nsfw_tui.tui.widgets.image_list import BAR
from nsfw_tui.tui.widgets.preview import Preview
from nsfw_tui.tui.widgets.status_bar import StatusBar

SIZE = (120, 40)
NAME_ORDER = ["beach.png", "fire.png", "forest.png", "lake.png", "party.png", "sunset.png"]


def names(rows) -> list[str]:
    return [r.name for r in rows]


def history(home, path: Path) -> list[str | None]:
    with Store.open(home.store_path, check=False) as store:
        return [ev.label for ev in store.label_history(sha_of(path))]


@pytest.fixture
def scenes(tmp_path) -> dict[str, float]:
    return scene_folder(tmp_path / "photos")


# -- loading and scoring -------------------------------------------------------------------


async def test_scores_shown_are_the_fake_scorers_exact_values(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        review = screen.review
        assert names(review.view) == NAME_ORDER
        assert {r.name: r.probability for r in review.rows} == scenes
        assert review.model_id == FAKE_ID and review.threshold == 0.5
        assert row_text(screen, 1).split()[:4] == ["fire.png", "█" * BAR, "0.980", "NSFW"]
        assert screen.images.cursor == 0 and screen.query_one(Preview).path.endswith("beach.png")
    with Store.open(app.home.store_path, check=False) as store:
        assert sorted(store.predictions(FAKE_ID).values()) == sorted(scenes.values())


# -- labels --------------------------------------------------------------------------------


async def test_label_moves_on_and_undo_restores(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("n")  # beach -> nsfw, cursor to fire
        assert screen.images.cursor == 1
        await pilot.press("s")  # fire -> sfw, cursor to forest
        assert screen.images.cursor == 2
        await wait_for(pilot, lambda: len(labels_by_name(app.home)) == 2)
        assert labels_by_name(app.home) == {"beach.png": "nsfw", "fire.png": "sfw"}

        await pilot.press("z")  # undoes fire only
        await wait_for(pilot, lambda: labels_by_name(app.home) == {"beach.png": "nsfw"})
        fire = screen.review.by_path[str(tmp_path / "photos/fire.png")]
        await wait_for(pilot, lambda: fire.label is None)
        await pilot.press("z")  # then beach
        await wait_for(pilot, lambda: labels_by_name(app.home) == {})
        await pilot.press("z")
        await wait_for(pilot, lambda: any("Nothing to undo" in n[2] for n in app.notes))
        assert all(r.label is None for r in screen.review.rows)
        assert any("Undid the last label change (1 image)" in n[2] for n in app.notes)
    assert history(app.home, tmp_path / "photos/fire.png") == ["sfw", None]


async def test_clear_removes_the_label_and_keeps_history(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("n", "up")
        assert screen.images.cursor == 0
        await wait_for(pilot, lambda: labels_by_name(app.home) == {"beach.png": "nsfw"})
        await pilot.press("u")
        assert screen.images.cursor == 0, "clearing stays on the image"
        await wait_for(pilot, lambda: labels_by_name(app.home) == {})
        assert screen.images.current.label is None
        assert "label       NONE" in screen_text(app)
    assert history(app.home, tmp_path / "photos/beach.png") == ["nsfw", None]


async def test_bulk_label_asks_first_and_undoes_as_one(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("down", "s")  # fire -> sfw first
        await wait_for(pilot, lambda: labels_by_name(app.home) == {"fire.png": "sfw"})

        await pilot.press("N")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # "no" in the dialog
        assert isinstance(app.screen, ReviewScreen)
        await pilot.pause(0.2)
        assert labels_by_name(app.home) == {"fire.png": "sfw"}

        await pilot.press("N", "y")
        everything = dict.fromkeys(NAME_ORDER, "nsfw")
        await wait_for(pilot, lambda: labels_by_name(app.home) == everything)
        assert all(r.label == "nsfw" for r in screen.review.rows)
        assert any("Labelled 6 images NSFW" in n[2] for n in app.notes)

        await pilot.press("z")  # one undo takes back the whole batch
        await wait_for(pilot, lambda: labels_by_name(app.home) == {"fire.png": "sfw"})
        await wait_for(pilot, lambda: any("(6 images)" in n[2] for n in app.notes))
        assert {r.name: r.label for r in screen.review.rows if r.label} == {"fire.png": "sfw"}


async def test_labels_persist_across_a_restart_over_the_same_home(tmp_path, scenes):
    first = make_test_app(tmp_path, tmp_path / "photos")
    async with first.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n", "s")
    # Quitting waits for the writer to finish what is queued.
    assert labels_by_name(first.home) == {"beach.png": "nsfw", "fire.png": "sfw"}

    second = make_test_app(tmp_path, tmp_path / "photos")
    async with second.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        assert {r.name: r.label for r in screen.review.rows if r.label} == {
            "beach.png": "nsfw",
            "fire.png": "sfw",
        }
        assert {r.name: r.probability for r in screen.review.rows} == scenes
        assert second.scorers[FAKE_ID].calls == 0, "a restart answers from the cache"


# -- view: filter, sort, threshold, search, folders ------------------------------------------


async def test_filter_cycles_through_every_view(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("n")  # beach (0.451, called SFW) labelled NSFW: a disagreement
        review = screen.review
        expected = {
            "unlabelled": NAME_ORDER[1:],
            "disagreements": ["beach.png"],
            "predicted NSFW": ["fire.png", "party.png", "sunset.png"],
            "uncertain": ["beach.png", "party.png"],
            "errors": [],
            "duplicates": [],  # flat colours: no pattern to hash, so no group
            "suspect": [],  # no adapted head, no out-of-fold scores
            "all": NAME_ORDER,
        }
        for name, rows in expected.items():
            await pilot.press("f")
            assert review.filter == name
            assert names(review.view) == rows, name
            assert names(screen.images.rows) == rows
            if rows:
                assert row_text(screen, 0).startswith(rows[0][:6])
            else:
                assert row_text(screen, 0).startswith("Nothing matches this filter")
            assert f"filter {name}" in screen_text(app)


async def test_sort_by_probability_and_uncertainty(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("o")
        assert screen.review.sort == "probability"
        by_prob = ["fire.png", "sunset.png", "party.png", "beach.png", "forest.png", "lake.png"]
        assert names(screen.images.rows) == by_prob
        assert screen.images.current.name == "beach.png", "the cursor keeps its image"
        await pilot.press("o")
        by_doubt = ["beach.png", "party.png", "sunset.png", "forest.png", "fire.png", "lake.png"]
        assert names(screen.images.rows) == by_doubt
        await pilot.press("o")
        assert screen.review.sort == "useful"
        await pilot.press("o")
        assert names(screen.images.rows) == NAME_ORDER


async def test_threshold_keys_change_the_calls(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        review = screen.review
        party = review.by_path[str(tmp_path / "photos/party.png")]
        beach = review.by_path[str(tmp_path / "photos/beach.png")]
        assert review.call(party) == "nsfw" and review.call(beach) == "sfw"
        await pilot.press("plus", "plus")
        assert review.threshold == 0.6
        assert review.call(party) == "sfw"
        assert "threshold 0.6 " in screen_text(app)
        await pilot.press(*["minus"] * 4)
        assert review.threshold == 0.4
        assert review.call(beach) == "nsfw"
        assert review.counts()["predicted_nsfw"] == 4
        assert "threshold 0.4 " in screen_text(app)
    with Store.open(app.home.store_path, check=False) as store:
        assert store.model(FAKE_ID).threshold == 0.5, "the keys change the session, not the model"


async def test_search_narrows_by_name_and_escape_clears(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("slash", "f", "o")
        assert screen.review.search == "fo"
        assert screen.review.filter == "all", "typed letters go to the search, not to bindings"
        assert names(screen.images.rows) == ["forest.png"]
        await pilot.press("enter")
        assert app.focused is screen.images
        assert names(screen.images.rows) == ["forest.png"]
        await pilot.press("escape")
        assert screen.review.search == ""
        assert names(screen.images.rows) == NAME_ORDER


async def test_folder_selection_shows_that_folder_only(tmp_path):
    root = tmp_path / "photos"
    solid(root / "top.png", 10)
    solid(root / "a" / "x.png", 200)
    solid(root / "a" / "deep" / "y.png", 20)
    solid(root / "b" / "z.png", 30)
    app = make_test_app(tmp_path, root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        everything = ["a/deep/y.png", "a/x.png", "b/z.png", "top.png"]
        assert [r.rel for r in screen.images.rows] == everything
        await pilot.press("tab")
        tree = screen.query_one(FolderTree)
        assert app.focused is tree
        await pilot.press("down", "enter")  # the root's first child: a
        assert screen.review.folder == "a"
        assert [r.rel for r in screen.images.rows] == ["a/deep/y.png", "a/x.png"]
        text = screen_text(app)
        assert "a  2 · 1 · 0" in text
        assert "photos  4 · 1 · 0" in text
        await pilot.press("up", "enter")  # back to the root: everything
        assert not screen.review.folder
        assert len(screen.images.rows) == 4


# -- dialogs: help, stats, model -------------------------------------------------------------


async def test_help_opens_and_closes(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "undo the last label change" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, ReviewScreen)


async def test_stats_confusion_recall_and_auroc_are_exact(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # beach .451 s, fire .980 n, forest .149 n, lake 0 s, party .569 s, sunset .8 n
        await pilot.press("s", "n", "n", "s", "s", "n")
        await wait_for(pilot, lambda: len(labels_by_name(app.home)) == 6)
        await pilot.press("i")
        assert isinstance(app.screen, StatsScreen)
        stats = app.screen.stats
        c = stats.confusion
        assert (c.tp, c.fn, c.fp, c.tn) == (2, 1, 1, 2)
        assert c.recall == 2 / 3 and c.precision == 2 / 3 and c.fpr == 1 / 3
        # positives .980 .8 .149 against negatives .569 .451 0: 3 + 3 + 1 wins of 9
        assert stats.auroc == 7 / 9
        assert stats.labelled == 6 and stats.scored_labelled == 6
        text = screen_text(app)
        assert "fake at threshold 0.5 " in text
        # label \ call | NSFW | SFW
        assert re.search(r"│ NSFW\s*│\s*2 │\s*1 │", text), "labelled NSFW: 2 called NSFW, 1 missed"
        assert re.search(r"│ SFW\s*│\s*1 │\s*2 │", text), "labelled SFW: 1 false alarm, 2 right"
        assert "recall (NSFW found)   0.667" in text
        assert "AUROC                 0.778" in text
        await pilot.press("escape")
        assert isinstance(app.screen, ReviewScreen)


async def test_model_switch_rescores_with_the_chosen_model(tmp_path, scenes):
    inverse = RedScorer("fake2", inverse=True)
    app = make_test_app(tmp_path, tmp_path / "photos", scorers=[inverse])
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("m")
        assert isinstance(app.screen, ModelScreen)
        options = app.screen.query_one(OptionList)
        options.highlighted = options.get_option_index("fake2")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model_name == "fake2")
        screen = await settle(pilot)
        assert screen.review.model_id == "fake2"
        assert {r.name: r.probability for r in screen.review.rows} == {
            name: 1.0 - p for name, p in scenes.items()
        }
        assert inverse.frames == 6
        assert "model fake2" in screen_text(app)
    with Store.open(app.home.store_path, check=False) as store:
        assert store.active_model().id == "fake2"
        assert len(store.predictions("fake2")) == 6 and len(store.predictions(FAKE_ID)) == 6


# -- preview ---------------------------------------------------------------------------------


async def test_likely_nsfw_preview_is_really_blurred_until_revealed(tmp_path):
    noisy(tmp_path / "photos" / "calm.png", (0, 40), 1)  # P ~ 0.08: shown as it is
    noisy(tmp_path / "photos" / "hot.png", (180, 256), 2)  # P ~ 0.86: blurred
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        preview = screen.query_one(Preview)
        calm = high_frequency(preview.shown)
        await pilot.press("down")
        await settle(pilot)
        assert preview.path.endswith("hot.png") and screen.images.current.probability > 0.8
        blurred = high_frequency(preview.shown)
        assert "blurred: space reveals" in screen_text(app)
        await pilot.press("space")
        revealed = high_frequency(preview.shown)
        assert blurred < 0.1 * revealed, (blurred, revealed)
        assert calm > 0.5 * revealed, "an image below the threshold is not blurred"
        await pilot.press("space")
        assert high_frequency(preview.shown) == blurred, "space blurs it again"


async def test_unreadable_image_shows_its_reason_instead_of_a_picture(tmp_path):
    (tmp_path / "photos").mkdir()
    truncated_jpeg(tmp_path / "photos" / "broken.jpg", 0.3)
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        row = screen.images.current
        assert row.error and row.error.startswith("truncated")
        preview = screen.query_one(Preview)
        assert preview.shown is None
        assert not preview.query_one("#preview-image").display
        text = screen_text(app)
        assert "Cannot show this image." in text
        assert "truncated:" in text


async def test_empty_folder_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    app = make_test_app(tmp_path, "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        assert screen.review.rows == []
        assert row_text(screen, 0).startswith("No images in photos ")
        assert "No images in photos." in screen_text(app)  # the preview pane
        await pilot.press("n", "s", "z", "down", "f", "o", "space", "i")  # nothing breaks
        assert app.is_running


# -- scale and responsiveness ----------------------------------------------------------------


def tiny_pngs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"tiny_{i:05d}.png"
        Image.new("RGB", (4, 4), (i % 256, (i // 256) % 256, 7)).save(p, compress_level=1)
        paths.append(p)
    return paths


@pytest.mark.slow
async def test_mounted_widgets_do_not_grow_with_the_number_of_images(tmp_path):
    counts = {}
    for n in (100, 10_000):
        base = tmp_path / str(n)
        paths = tiny_pngs(base / "photos", n)
        app = make_test_app(base, base / "photos")
        # A warm cache, as after a first scan: scoring 10,000 files inline is not the point.
        prefill(app.home, paths, lambda p: int(p.stem[5:]) % 256 / 255)
        async with app.run_test(size=SIZE) as pilot:
            screen = await settle(pilot)
            assert len(screen.images.rows) == n
            assert app.scorers[FAKE_ID].calls == 0
            await pilot.press("end")
            assert screen.images.current.name == f"tiny_{n - 1:05d}.png"
            assert f"tiny_{n - 1:05d}" in screen_text(app)
            counts[n] = len(list(app.screen.walk_children(with_self=True)))
    assert counts[10_000] == counts[100], counts


@pytest.mark.slow
async def test_keys_are_handled_while_a_slow_scorer_runs(tmp_path, scenes):
    slow = RedScorer(delay=1.0)  # a second per batch of 2: three seconds in all
    app = make_test_app(tmp_path, tmp_path / "photos", scorer=slow, batch_size=2)
    async with app.run_test(size=SIZE) as pilot:
        screen = review_screen(app)
        await wait_for(pilot, lambda: screen.review is not None and screen.progress is not None)
        [worker] = [w for w in app.workers if w.group == "score"]
        assert "scoring" in str(screen.query_one(StatusBar).content)
        await pilot.press("n", "s")
        assert screen.images.cursor == 2
        beach, fire = (tmp_path / "photos" / n for n in ("beach.png", "fire.png"))
        want = {sha_of(beach): "nsfw", sha_of(fire): "sfw"}
        await wait_for(pilot, lambda: labels_by_sha(app.home) == want)
        assert worker.is_running, "the labels were saved while scoring still ran"
        assert slow.calls < 3
        await settle(pilot)
        assert slow.calls == 3
        assert {r.name: r.label for r in screen.review.rows if r.label} == {
            "beach.png": "nsfw",
            "fire.png": "sfw",
        }


# -- failures: workers, busy and read-only stores ----------------------------------------


async def test_failing_worker_notifies_and_the_app_keeps_running(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos", scorer=RedScorer(fail_on=1))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = review_screen(app)
        await wait_for(pilot, lambda: any(n[0] == "error" for n in app.notes))
        [(_, title, message)] = [n for n in app.notes if n[0] == "error"]
        assert title == "score failed"
        assert message == "fake scorer exploded on [bold]purpose[/bold]"  # no class name
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "[bold]purpose[/bold]" in text, "the toast shows the error literally"
        assert app.is_running
        await pilot.press("down", "n")
        await wait_for(pilot, lambda: len(labels_by_sha(app.home)) == 1)
        assert screen.images.cursor == 2
        status = str(screen.query_one(StatusBar).content)  # redrawn by the label
        assert "scored 0/6" in status and "scoring" not in status, "the bar stops saying scoring"


@pytest.mark.slow
async def test_busy_store_tells_the_person_and_saves_the_label_later(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        other = sqlite3.connect(app.home.store_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            locked_at = time.monotonic()
            await pilot.press("n")
            assert screen.review.rows[0].label == "nsfw", "the screen shows it at once"
            await wait_for(pilot, lambda: any(n[0] == "warning" for n in app.notes), 5)
            [(_, title, message)] = [n for n in app.notes if n[0] == "warning"]
            assert "busy" in title.lower() and "queued" in message
            assert labels_by_sha(app.home) == {}
            await pilot.pause(max(0.0, 3.0 - (time.monotonic() - locked_at)))
            assert labels_by_sha(app.home) == {}
        finally:
            other.execute("ROLLBACK")
            other.close()
        await wait_for(pilot, lambda: labels_by_name(app.home) == {"beach.png": "nsfw"}, 5)
        assert not [n for n in app.notes if n[0] == "error"]
        assert screen.review.rows[0].label == "nsfw"


@pytest.mark.slow
async def test_labels_wait_out_a_long_busy_store_counted_and_quit_asks_first(tmp_path, scenes):
    """S3: a label queued behind a busy store is never dropped, however long the wait."""
    import nsfw_tui.tui.label_writer as writer_module

    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        status = screen.query_one(StatusBar)
        other = sqlite3.connect(app.home.store_path, isolation_level=None)
        released = False
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            await pilot.press("n", "s")
            await wait_for(pilot, lambda: status.waiting == 2, 5)
            assert "2 labels waiting: store busy" in str(status.content)
            # Many attempts (each waits ATTEMPT_TIMEOUT_S) fail in a row: none gives up.
            await pilot.pause(3 * writer_module.ATTEMPT_TIMEOUT_S + 0.5)
            assert labels_by_sha(app.home) == {} and app.label_writer.waiting == 2
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5)
            assert "2 labels are not saved yet" in screen_text(app)
            await pilot.press("n")  # stay
            await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen), 5)
            assert app.is_running
            other.execute("ROLLBACK")
            released, released_at = True, time.monotonic()
            await wait_for(
                pilot, lambda: labels_by_name(app.home) == {"beach.png": "nsfw", "fire.png": "sfw"}
            )
            print(f"\nS3: queued labels saved {time.monotonic() - released_at:.2f} s after release")
            await wait_for(pilot, lambda: status.waiting == 0, 5)
            assert "waiting" not in str(status.content)
        finally:
            if not released:
                other.execute("ROLLBACK")
            other.close()
        await pilot.press("q")  # nothing waits now: quits without asking
        await wait_for(pilot, lambda: not app.is_running, 5)


async def test_read_only_store_refuses_labels_out_loud(tmp_path, scenes):
    app = make_test_app(tmp_path, tmp_path / "photos")
    prefill(app.home, sorted((tmp_path / "photos").iterdir()), lambda p: scenes[p.name])
    make_readonly(app.home)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        assert {r.name: r.probability for r in screen.review.rows} == scenes
        await pilot.press("n", "N")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ReviewScreen), "refused at once, not asked first"
        assert screen.images.cursor == 0, "a refused label does not move on"
        assert all(r.label is None for r in screen.review.rows)
        errors = [n for n in app.notes if n[0] == "error"]
        assert len(errors) == 2, app.notes
        for _, title, message in errors:
            assert title == "Labels not saved" and "read-only" in message
    conn = sqlite3.connect(app.home.store_path)
    try:
        assert conn.execute("SELECT count(*) FROM label_events").fetchone()[0] == 0
    finally:
        conn.close()


# -- hostile names ---------------------------------------------------------------------------


async def test_file_names_are_shown_literally(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path("photos")
    solid(root / "[bold red]x.png", 240)
    solid(root / "esc\x1b[2Jname.png", 10)
    solid(root / "[red]dir\x1b]0;pwned" / "in.png", 20)
    solid(root / os.fsdecode(b"bad\xff.png"), 30)
    app = make_test_app(tmp_path, root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        assert len(screen.review.rows) == 4
        seen = ""
        for i in range(4):
            screen.images.cursor = i
            await settle(pilot)
            text = screen_text(app)
            assert "\x1b" not in text and "\x07" not in text
            text.encode("utf-8")  # no lone surrogates reach the terminal
            seen += text
        assert "photos/[bold red]x.png" in seen  # the preview's path line
        assert "[bold r" in row_text(screen, 0)  # the list row, cut to its column
        assert "esc\\x1b[2Jname.png" in seen
        assert "[red]dir\\x1b]0;pwned" in seen  # the folder tree
        assert "bad\\xff.png" in seen
        assert app.is_running


# -- the command line ------------------------------------------------------------------------


# A bare word that is no path is a mistyped command (tests/cli/test_cli_usage.py).
@pytest.mark.parametrize("args", [["./nowhere"], ["open", "nowhere"]], ids=["default", "open"])
def test_missing_folder_is_one_line_before_the_app_starts(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli_app, [*args, "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: folder not found: nowhere"]
