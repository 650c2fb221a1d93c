"""Videos in the thumbnail grid: the frame the preview shows, or why there is none."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from support.tui import RedScorer, make_test_app, screen_text, settle, sha_of, solid, wait_for
from support.videogen import red_between, write_video
from textual.color import Color
from textual.widgets import OptionList

from nsfw_tui.core.thumbnails import ThumbnailCache
from nsfw_tui.tui.screens.dialogs import ModelScreen
from nsfw_tui.tui.widgets.thumbnail_grid import COLOURS, ThumbCell, ThumbnailGrid

pytest.importorskip("av")

SIZE = (120, 40)


def colours(image) -> tuple[float, float]:
    """Mean red and blue of a picture."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return rgb[..., 0].mean(), rgb[..., 2].mean()


def cell(grid: ThumbnailGrid, name: str) -> ThumbCell:
    for c in grid.query(ThumbCell):
        if c.path and c.path.endswith(name):
            return c
    raise AssertionError(f"{name} is not on the page")


async def test_a_video_cell_shows_the_frame_that_scored_highest(tmp_path):
    folder = tmp_path / "photos"
    write_video(folder / "clip.mp4", colour=red_between(2.0, 2.5))  # blue, red in the middle
    solid(folder / "still.png", 20)
    app = make_test_app(tmp_path, folder, blur=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("g")
        grid = screen.grid
        await wait_for(
            pilot, lambda: all(c.picture is not None for c in grid.query(ThumbCell) if c.path)
        )
        video = cell(grid, "clip.mp4")
        assert video.note == ""
        red, blue = colours(video.picture)
        assert red > 180 and blue < 60, "the red middle frame, not the first one"
        assert video.styles.border_top[1] == Color.parse(COLOURS["nsfw"])
    # cached under the hash and the frame's time (the preview's 2.12 s), not the first frame
    sha = sha_of(folder / "clip.mp4")
    cache = ThumbnailCache(app.home.thumbnail_dir)
    assert cache.read(sha, 2.125) is not None and cache.read(sha) is None


async def test_without_pyav_a_scored_video_cell_names_the_extra_in_amber(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    write_video(folder / "clip.mp4", colour=red_between(2.0, 2.5))
    app = make_test_app(tmp_path, folder)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)  # scored while PyAV is there; no thumbnail made yet
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    app = make_test_app(tmp_path, folder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        (row,) = screen.review.rows
        assert row.error is None and row.probability > 0.8, "the score is kept"
        await pilot.press("g")
        grid = screen.grid
        await wait_for(pilot, lambda: row.path in grid.held)
        await pilot.pause()
        video = cell(grid, "clip.mp4")
        assert video.picture is None
        assert video.note.startswith("needs-extra: ") and "video extra" in video.note
        assert video.styles.border_top[1] == Color.parse(COLOURS["error"])
        assert "video extra" in screen_text(app)


async def test_another_model_shows_the_frame_it_scored_highest(tmp_path):
    folder = tmp_path / "photos"
    write_video(folder / "clip.mp4", colour=red_between(2.0, 2.5))
    inverse = RedScorer("fake2", inverse=True)  # blue frames score highest
    app = make_test_app(tmp_path, folder, scorers=[inverse], blur=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("g")
        grid = screen.grid
        await wait_for(pilot, lambda: cell(grid, "clip.mp4").picture is not None)
        assert colours(cell(grid, "clip.mp4").picture)[0] > 180, "red under the first model"
        await pilot.press("m")
        assert isinstance(app.screen, ModelScreen)
        options = app.screen.query_one(OptionList)
        options.highlighted = options.get_option_index("fake2")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model_name == "fake2")
        screen = await settle(pilot)
        assert screen.grid_mode
        await wait_for(pilot, lambda: cell(grid, "clip.mp4").picture is not None)
        red, blue = colours(cell(grid, "clip.mp4").picture)
        assert blue > 180 and red < 60, "the blue frame the second model scored highest"


async def test_enter_opens_a_video_large_on_the_frame_its_cell_shows(tmp_path):
    from nsfw_tui.tui.screens.large_image import LargeImageScreen

    folder = tmp_path / "photos"
    write_video(folder / "clip.mp4", colour=red_between(2.0, 2.5))
    app = make_test_app(tmp_path, folder, blur=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("g")
        grid = screen.grid
        await wait_for(pilot, lambda: cell(grid, "clip.mp4").picture is not None)
        await pilot.press("enter")
        large = app.screen
        assert isinstance(large, LargeImageScreen)
        await wait_for(pilot, lambda: large.ready is not None)
        assert large.ready.error is None, large.ready.error
        red, blue = colours(large.ready.image)
        assert red > 180 and blue < 60, "the red frame that scored highest, not the first"
