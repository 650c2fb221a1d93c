"""SVG snapshots of the thumbnail grid in safe mode and revealed (--no-blur), half-cell renderer.

As in test_tui_snapshots.py: a relative folder under tmp_path, no history on screen. After a
deliberate change: `pytest --snapshot-update tests/tui/test_grid_snapshots.py`, then look.
"""

from __future__ import annotations

import pytest
from support.imagegen import photo, save
from support.tui import labels_by_name, make_test_app, settle, solid, wait_for

SIZE = (120, 40)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def photos(folder) -> None:
    """Photo-like pictures (blurred or not by their redness), solid colours, a labelled one."""
    for i in range(6):
        save(photo((160, 120), seed=i), folder / f"photo_{i}.png")
    solid(folder / "red.png", 230)
    solid(folder / "sub" / "blue.png", 20)


def grid_shown(labels: bool):
    async def run(pilot) -> None:
        screen = await settle(pilot)
        if labels:
            await pilot.press("s")  # the first image gets a label: its caption shows it
            await wait_for(pilot, lambda: len(labels_by_name(pilot.app.home)) == 1)
        await pilot.press("g")
        grid = screen.grid
        await wait_for(pilot, lambda: grid.page and all(r.path in grid.held for r in grid.page))
        await pilot.press("right", "x", "right")  # one marked, the cursor on the third
        await settle(pilot)

    return run


def test_grid_safe_mode(here, snap_compare):
    photos(here / "photos")
    app = make_test_app(here, "photos")
    assert snap_compare(app, terminal_size=SIZE, run_before=grid_shown(labels=True))


def test_grid_revealed(here, snap_compare):
    photos(here / "photos")
    app = make_test_app(here, "photos", blur=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=grid_shown(labels=False))
