"""The review screen's thumbnail grid driven by Pilot: every key, blur, the page in memory."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from support.imagegen import high_frequency, noisy, truncated_jpeg
from support.tui import (
    labels_by_name,
    make_test_app,
    scene_folder,
    screen_text,
    settle,
    sha_of,
    solid,
    wait_for,
)
from textual.color import Color
from textual.content import Content
from textual.widgets import Footer

from nsfw_tui.core.thumbnails import ThumbnailCache
from nsfw_tui.tui.screens.dialogs import ConfirmScreen
from nsfw_tui.tui.screens.large_image import LargeImageScreen
from nsfw_tui.tui.screens.review import ReviewScreen
from nsfw_tui.tui.widgets.image_list import ImageList
from nsfw_tui.tui.widgets.preview import Preview
from nsfw_tui.tui.widgets.thumbnail_grid import COLOURS, ThumbCell, ThumbnailGrid

SIZE = (120, 40)  # 6 columns of cells, 4 lines: a page of 24
SMALL = (60, 30)  # 3 columns, 3 lines: a page of 9
NAME_ORDER = ["beach.png", "fire.png", "forest.png", "lake.png", "party.png", "sunset.png"]


def many(folder: Path, n: int) -> list[str]:
    """``n`` solid images named in order; their fake scores run from 0 up."""
    names = [f"img_{i:02d}.png" for i in range(n)]
    for i, name in enumerate(names):
        solid(folder / name, i * 255 // max(1, n - 1))
    return names


async def open_grid(pilot) -> ThumbnailGrid:
    """Press g and wait until every thumbnail of the first page is held."""
    screen = await settle(pilot)
    await pilot.press("g")
    grid = screen.grid
    await wait_for(pilot, lambda: grid.page and all(r.path in grid.held for r in grid.page))
    await pilot.pause()
    return grid


def plain(markup: str | None) -> str:
    """A frame's title or caption as drawn (the widget hands it back as markup)."""
    return Content.from_markup(markup or "").plain


def cell_of(grid: ThumbnailGrid, name: str) -> ThumbCell:
    for cell in grid.query(ThumbCell):
        if cell.path and Path(cell.path).name == name:
            return cell
    raise AssertionError(f"{name} is not on the page")


async def test_g_toggles_list_and_grid_keeping_the_current_image(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        assert not screen.grid.display
        await pilot.press("down", "down")  # forest in the list
        grid = await open_grid(pilot)
        assert grid.display and grid.has_focus
        assert not screen.images.display and not screen.query_one(Preview).display
        assert grid.current.name == "forest.png"
        assert (grid.columns, grid.lines) == (6, 4)
        assert [Path(c.path).name for c in grid.query(ThumbCell) if c.path] == NAME_ORDER
        await pilot.press("right")  # lake
        await pilot.press("g")
        assert screen.images.display and not grid.display and screen.images.has_focus
        assert screen.images.current.name == "lake.png"
        assert "g Grid" in screen_text(app) and screen.query_one(Footer)


async def test_arrows_and_hjkl_move_page_keys_turn_pages(tmp_path):
    names = many(tmp_path / "photos", 20)
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SMALL) as pilot:
        grid = await open_grid(pilot)
        assert (grid.columns, grid.lines) == (3, 3)

        def at() -> str:
            return grid.current.name

        steps = [
            ("right", 1),
            ("l", 2),
            ("down", 5),
            ("j", 8),
            ("left", 7),
            ("h", 6),
            ("up", 3),
            ("k", 0),
            ("up", 0),  # stops at the first
            ("pagedown", 9),
            ("pagedown", 18),
            ("pagedown", 19),  # stops at the last
            ("pageup", 10),
            ("home", 0),
            ("end", 19),
        ]
        for key, index in steps:
            await pilot.press(key)
            assert at() == names[index], (key, at())
        assert grid.first == 18 and [r.name for r in grid.page] == names[18:]
        heavy = [c for c in grid.query(ThumbCell) if c.styles.border_top[0] == "heavy"]
        assert [Path(c.path).name for c in heavy] == [names[19]]


async def test_n_s_u_z_act_on_the_current_thumbnail(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        await pilot.press("n")  # beach -> nsfw, on to fire
        assert grid.current.name == "fire.png"
        await pilot.press("s")  # fire -> sfw, on to forest
        assert grid.current.name == "forest.png"
        await wait_for(pilot, lambda: len(labels_by_name(app.home)) == 2)
        assert labels_by_name(app.home) == {"beach.png": "nsfw", "fire.png": "sfw"}
        assert "✔SFW" in plain(cell_of(grid, "fire.png").border_subtitle)
        await pilot.press("left", "u")  # fire cleared, the cursor stays on it
        assert grid.current.name == "fire.png"
        await wait_for(pilot, lambda: labels_by_name(app.home) == {"beach.png": "nsfw"})
        assert "✔" not in plain(cell_of(grid, "fire.png").border_subtitle)
        await pilot.press("z")  # the clear undone: fire is SFW again
        want = {"beach.png": "nsfw", "fire.png": "sfw"}
        await wait_for(pilot, lambda: labels_by_name(app.home) == want)
        await wait_for(pilot, lambda: "✔SFW" in plain(cell_of(grid, "fire.png").border_subtitle))


async def test_x_marks_and_capital_n_labels_only_the_marked_as_one_undo(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        await pilot.press("x", "right", "x")  # beach and forest; x moves on
        assert {Path(p).name for p in grid.marked} == {"beach.png", "forest.png"}
        assert plain(cell_of(grid, "beach.png").border_title).startswith("● ")
        await pilot.press("left", "x")  # forest again: unmarked
        assert {Path(p).name for p in grid.marked} == {"beach.png"}
        await pilot.press("end", "x")  # sunset
        await pilot.press("N")
        assert isinstance(app.screen, ReviewScreen), "marked images are labelled without asking"
        want = {"beach.png": "nsfw", "sunset.png": "nsfw"}
        await wait_for(pilot, lambda: labels_by_name(app.home) == want)
        assert not grid.marked
        assert any("Labelled 2 marked images NSFW" in n[2] for n in app.notes)
        await pilot.press("z")  # one undo takes back both
        await wait_for(pilot, lambda: labels_by_name(app.home) == {})


async def test_capital_s_without_marks_asks_for_the_whole_view(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        await open_grid(pilot)
        await pilot.press("S")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: labels_by_name(app.home) == dict.fromkeys(NAME_ORDER, "sfw"))


async def test_marks_are_dropped_when_the_list_comes_back(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        await pilot.press("x", "g", "N")  # in the list, N is the whole view: it asks
        assert not grid.marked
        assert isinstance(app.screen, ConfirmScreen)


async def test_enter_opens_the_current_one_large_blurred_until_revealed(tmp_path):
    noisy(tmp_path / "photos" / "calm.png", (0, 40), 1)  # P ~ 0.08
    noisy(tmp_path / "photos" / "hot.png", (180, 256), 2)  # P ~ 0.86
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        await pilot.press("right", "enter")
        assert isinstance(app.screen, LargeImageScreen)
        large = app.screen.query_one(Preview)
        await wait_for(pilot, lambda: large.shown is not None)
        assert large.path.endswith("hot.png") and large.size.width > 100
        blurred = high_frequency(large.shown)
        assert "blurred: space reveals" in screen_text(app)
        await pilot.press("space")
        revealed = high_frequency(large.shown)
        assert blurred < 0.1 * revealed, (blurred, revealed)
        await pilot.press("escape")  # back, and the reveal stays with the image
        assert isinstance(app.screen, ReviewScreen) and grid.current.name == "hot.png"
        cell = cell_of(grid, "hot.png")
        assert cell.picture is grid.held[cell.path].image


async def test_grid_blur_is_as_strong_as_the_previews(tmp_path):
    noisy(tmp_path / "photos" / "calm.png", (0, 40), 1)  # P ~ 0.08: shown as it is
    noisy(tmp_path / "photos" / "hot.png", (180, 256), 2)  # P ~ 0.86: blurred
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        calm, hot = cell_of(grid, "calm.png"), cell_of(grid, "hot.png")
        assert calm.picture is grid.held[calm.path].image, "below the threshold: not blurred"
        assert hot.picture is grid.held[hot.path].blurred
        blurred = high_frequency(hot.picture)
        revealed = high_frequency(grid.held[hot.path].image)
        assert blurred < 0.1 * revealed, (blurred, revealed)  # the preview's own bound
        assert high_frequency(calm.picture) > 0.5 * revealed
        await pilot.press("right", "space")
        assert hot.picture is grid.held[hot.path].image
        await pilot.press("space")
        assert hot.picture is grid.held[hot.path].blurred, "space blurs it again"
        await pilot.press("space", "left")  # a reveal lasts while its image is current
        assert hot.picture is grid.held[hot.path].blurred
        # The preview's blurred picture brought to the thumbnail's size keeps no less detail:
        # the same blur, as strong relative to the picture.
        thumb = grid.held[hot.path].blurred
        await pilot.press("right", "g")  # the list, on the hot image: its preview is blurred
        await settle(pilot)
        preview = app.screen.query_one(Preview)
        assert preview.path == hot.path and preview.shown.size != thumb.size
        same_scale = preview.shown.resize(thumb.size, Image.Resampling.LANCZOS)
        assert high_frequency(thumb) <= 1.05 * high_frequency(same_scale)


async def test_no_blur_shows_every_thumbnail_as_it_is(tmp_path):
    noisy(tmp_path / "photos" / "hot.png", (180, 256), 2)  # P ~ 0.86
    app = make_test_app(tmp_path, tmp_path / "photos", blur=False)
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        hot = cell_of(grid, "hot.png")
        assert hot.picture is grid.held[hot.path].image, "--no-blur shows every thumbnail"


async def test_threshold_keys_recolour_frames_and_change_the_blur(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        beach = cell_of(grid, "beach.png")  # P 0.451 under the threshold 0.5
        assert beach.styles.border_top[1] == Color.parse(COLOURS["sfw"])
        assert beach.picture is grid.held[beach.path].image
        await pilot.press("minus")  # 0.45: beach is now called NSFW
        assert "nsfw 0.45" in plain(beach.border_subtitle)
        assert beach.picture is grid.held[beach.path].blurred
        assert beach.styles.border_top[1] == Color.parse(COLOURS["nsfw"])


async def test_unreadable_file_shows_its_reason_in_its_cell_never_a_picture(tmp_path):
    (tmp_path / "photos").mkdir()
    truncated_jpeg(tmp_path / "photos" / "broken.jpg", 0.3)
    solid(tmp_path / "photos" / "fine.png", 10)
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("g")
        grid = screen.grid
        await wait_for(pilot, lambda: any(r.name == "fine.png" for r in grid.page))
        await wait_for(pilot, lambda: cell_of(grid, "fine.png").picture is not None)
        broken = cell_of(grid, "broken.jpg")
        assert broken.picture is None
        assert plain(broken.border_subtitle).startswith("error")
        assert "truncated" in screen_text(app)


async def test_thumbnails_are_cached_on_disk_by_content_hash(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        await open_grid(pilot)
    cache = ThumbnailCache(app.home.thumbnail_dir)
    for name in NAME_ORDER:
        image = cache.read(sha_of(tmp_path / "photos" / name))
        assert image is not None and image.size == (24, 16), name  # never enlarged
    # A copy of a file under another name is the same thumbnail: nothing new on disk.
    (tmp_path / "photos" / "copy_of_fire.png").write_bytes(
        (tmp_path / "photos/fire.png").read_bytes()
    )
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        await open_grid(pilot)
    assert len(list(cache.root.rglob("*.jpg"))) == len(NAME_ORDER)


async def test_only_this_page_and_the_next_are_held_and_no_widget_is_added_per_image(tmp_path):
    many(tmp_path / "photos", 40)
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SMALL) as pilot:
        grid = await open_grid(pilot)
        widgets = len(list(app.screen.walk_children(with_self=True)))
        for page in range(1, 5):
            await pilot.press("pagedown")
            await wait_for(pilot, lambda: all(r.path in grid.held for r in grid.page))
            assert grid.first == min(page * 9, 36)
            window = {r.path for r in grid.rows[grid.first : grid.first + 18]}
            await wait_for(pilot, lambda w=window: set(grid.held) == w)  # the next made ahead
            assert set(grid.held) == window, "nothing else in memory"
            assert len(list(app.screen.walk_children(with_self=True))) == widgets
        assert not any(isinstance(w, ImageList) and w.display for w in app.screen.query("*"))


async def test_file_names_are_drawn_literally_in_the_frames(tmp_path):
    folder = tmp_path / "photos"
    solid(folder / "[bold red]x.png", 30)
    solid(folder / "esc\x1b[2Jname.png", 60)
    app = make_test_app(tmp_path, folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_grid(pilot)
        text = screen_text(app)
        assert "\x1b" not in text
        assert "[bold red]x.p" in text  # the markup is the name, not a style
        assert "esc\\x1b[2Jn" in text


async def test_a_click_makes_a_thumbnail_current(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        lake = cell_of(grid, "lake.png")
        await pilot.click(lake, offset=(3, 3))
        assert grid.current.name == "lake.png"
        assert lake.styles.border_top[0] == "heavy"


async def test_every_grid_key_on_an_empty_folder_is_harmless(tmp_path):
    (tmp_path / "photos").mkdir()
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await pilot.press("g")
        keys = ["right", "l", "down", "j", "pagedown", "end", "x", "n", "s", "u", "z"]
        await pilot.press(*keys, "N", "S", "space", "enter", "minus")
        assert app.is_running and isinstance(app.screen, ReviewScreen)
        assert screen.grid.current is None and not screen.grid.marked
        assert all(c.path is None for c in screen.grid.query(ThumbCell))


async def test_a_resize_refits_the_cells_and_keeps_the_current_image(tmp_path):
    many(tmp_path / "photos", 30)
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        await pilot.press("end")  # img_29, on the second page of 24
        assert grid.first == 24
        await pilot.resize_terminal(*SMALL)
        await wait_for(pilot, lambda: grid.page_size == 9)
        await wait_for(pilot, lambda: all(r.path in grid.held for r in grid.page))
        assert len(grid.query(ThumbCell)) == 9
        assert grid.current.name == "img_29.png" and grid.first == 27
        assert [Path(c.path).name for c in grid.query(ThumbCell) if c.path][-1] == "img_29.png"


async def test_a_filter_narrows_the_grid_as_it_does_the_list(tmp_path):
    scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos")
    async with app.run_test(size=SIZE) as pilot:
        grid = await open_grid(pilot)
        await pilot.press("n", "n")  # beach and fire
        await wait_for(pilot, lambda: len(labels_by_name(app.home)) == 2)
        await pilot.press("f")  # unlabelled
        assert app.screen.review.filter == "unlabelled"
        shown = [r.name for r in grid.rows]
        assert shown == ["forest.png", "lake.png", "party.png", "sunset.png"]
        await wait_for(pilot, lambda: all(r.path in grid.held for r in grid.page))
        assert [Path(c.path).name for c in grid.query(ThumbCell) if c.path] == shown
