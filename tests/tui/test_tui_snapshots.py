"""SVG snapshots of each screen (pytest-textual-snapshot), with the half-cell renderer forced.

Every test runs in tmp_path with a relative folder, so no temporary path reaches the screen,
and no label history is on screen, so no timestamp does either. After a deliberate change to
the screens: `pytest --snapshot-update tests/test_tui_snapshots.py`, then look at the SVGs.
"""

from __future__ import annotations

import pytest
from support.imagegen import photo, save, truncated_jpeg
from support.tui import labels_by_sha, make_test_app, scene_folder, settle, solid, wait_for

SIZE = (120, 40)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def photos(folder) -> None:
    """Photo-like pictures (blurred or not by their redness) and two solid colours."""
    for i in range(4):
        save(photo((160, 120), seed=i), folder / f"photo_{i}.png")
    solid(folder / "red.png", 230)
    solid(folder / "sub" / "blue.png", 20)


async def scored(pilot) -> None:
    await settle(pilot)


def test_main_screen(here, snap_compare):
    photos(here / "photos")
    app = make_test_app(here, "photos")
    assert snap_compare(app, terminal_size=SIZE, run_before=scored)


def test_help_screen(here, snap_compare):
    photos(here / "photos")
    app = make_test_app(here, "photos")
    assert snap_compare(app, press=["question_mark"], terminal_size=SIZE, run_before=scored)


def test_stats_screen(here, snap_compare):
    scene_folder(here / "photos")
    app = make_test_app(here, "photos")

    async def labelled(pilot) -> None:
        await settle(pilot)
        # beach s, fire n, forest n: the cursor then stands on lake, which has no history
        await pilot.press("s", "n", "n")
        await wait_for(pilot, lambda: len(labels_by_sha(app.home)) == 3)
        await settle(pilot)

    assert snap_compare(app, press=["i"], terminal_size=SIZE, run_before=labelled)


def test_empty_folder(here, snap_compare):
    (here / "photos").mkdir()
    app = make_test_app(here, "photos")
    assert snap_compare(app, terminal_size=SIZE, run_before=scored)


def test_error_preview(here, snap_compare):
    (here / "photos").mkdir()
    truncated_jpeg(here / "photos" / "broken.jpg", 0.3)  # first by name: selected
    save(photo((160, 120), seed=7), here / "photos" / "fine.png")
    app = make_test_app(here, "photos")
    assert snap_compare(app, terminal_size=SIZE, run_before=scored)
