"""Review-screen speed: first frame and cursor moves over 10,000 cached images, peak memory;
the thumbnail grid's first page, page turns and key to frame, per image renderer.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/tui_speed.py
Options: --images N (default 10000), --moves N (default 200), --pages N (grid page turns,
default 30), --renderers (default halfcell,sixel,kitty; "" skips the grid), --screenshot PATH
(default docs/screenshot.svg; "" skips it). The app runs headless (App.run_test) at 120 x 40;
the list with the half-cell image renderer. The store is warmed first by a scan with a fast
fake scorer, so the figures are the screen's own, not the model's. The grid runs over its own
folder of 160 x 120 pictures: one session makes the thumbnails (the cold figures), a second
over the same home reads them from the disk cache (the warm ones).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from textual_image.widget import HalfcellImage, SixelImage, TGPImage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.imagegen import photo, save
from support.tui import RedScorer, make_test_app, prepare_home, review_screen, settle

from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.core.store import Store
from nsfw_tui.tui.app import make_app
from nsfw_tui.tui.settings import ReviewSettings
from nsfw_tui.tui.widgets.image_list import HEADER, ImageList

ROOT = Path(__file__).resolve().parents[1]
SIZE = (120, 40)


def make_tiny(folder: Path, n: int, size: tuple[int, int] = (8, 8)) -> None:
    ramp = np.linspace(0, 1, size[0], dtype=np.float32)[None, :, None]
    for sub in range(0, n, 1000):  # 1,000 per folder, as a real collection might be
        d = folder / f"set_{sub // 1000:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(sub, min(n, sub + 1000)):
            colour = (i % 256, i // 256 % 256, 77)  # every image different
            if size == (8, 8):
                image = Image.new("RGB", size, colour)
            else:  # a gradient: something for the renderers and the blur to work on
                px = np.broadcast_to(np.array(colour, np.float32) * ramp, (size[1], size[0], 3))
                image = Image.fromarray(px.astype(np.uint8), "RGB")
            image.save(d / f"img_{i:05d}.png", compress_level=1)


def summary(times: list[float]) -> str:
    ms = [t * 1000 for t in times]
    return (
        f"mean {statistics.mean(ms):6.2f} ms  median {statistics.median(ms):6.2f} ms  "
        f"max {max(ms):6.2f} ms"
    )


async def measure(base: Path, n: int, moves: int) -> None:
    folder = base / "photos"
    app = make_test_app(base, folder)
    t0 = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        screen = review_screen(app)
        while screen.review is None or len(screen.images.rows) < n:
            await pilot.pause(0.001)
        t_loaded = time.perf_counter() - t0
        await pilot.pause()  # the refresh that draws those rows
        t_frame = time.perf_counter() - t0
        first = "".join(s.text for s in screen.images.render_line(HEADER))
        assert first.startswith("set_00/"), first
        print(
            f"time to first full frame: {t_frame * 1000:7.1f} ms "
            f"(rows loaded at {t_loaded * 1000:.1f} ms)"
        )
        await settle(pilot)
        assert app.scorers["fake"].calls == 0, "the cache was warm"

        images = screen.query_one(ImageList)
        pressed = []
        for _ in range(moves):
            t = time.perf_counter()
            await pilot.press("down")
            pressed.append(time.perf_counter() - t)
        paused = []
        for _ in range(moves):
            t = time.perf_counter()
            images.action_cursor(1)
            await pilot.pause()  # also waits for the CPU to go idle (preview threads)
            paused.append(time.perf_counter() - t)
        handled = []
        for _ in range(moves):
            t = time.perf_counter()
            images.action_cursor(1)
            # Every message queued on the screen's widgets is handled; no idle heuristic.
            await pilot._wait_for_screen()
            handled.append(time.perf_counter() - t)
        assert images.cursor == min(3 * moves, n - 1)
        print(f"{moves} cursor moves, each timed:")
        print(f"  Pilot.press('down') (waits for idle, up to 1 s): {summary(pressed)}")
        print(f"  action + pilot.pause() (waits for idle too):     {summary(paused)}")
        print(f"  action + every queued message handled:           {summary(handled)}")
        await pilot.press("end")
        widgets = len(list(app.screen.walk_children(with_self=True)))
        print(f"mounted widgets on the review screen: {widgets}")


def rss_mib() -> float:
    """The resident memory now (not the peak): what the grid holds after its pages."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1] * 1000 if len(times) > 1 else times[0] * 1000


async def page_held(pilot, grid) -> None:
    while not (grid.page and all(r.path in grid.held for r in grid.page)):
        await pilot.pause(0.001)
    await pilot._wait_for_screen()  # and drawn


async def window_held(pilot, grid) -> None:
    """Until the next page is made ahead too, as while a person looks at this one."""
    while not all(r.path in grid.held for r in grid.window):
        await pilot.pause(0.005)


async def grid_session(
    base: Path, n: int, moves: int, pages: int, renderer, warm: bool, say=print
) -> None:
    app = make_test_app(base, base / "grid")
    app.settings = replace(app.settings, image_class=renderer)
    async with app.run_test(size=SIZE) as pilot:
        screen = review_screen(app)
        while screen.review is None or len(screen.images.rows) < n:
            await pilot.pause(0.01)
        await settle(pilot, timeout=120)
        assert app.scorers["fake"].calls == 0, "the store was warm"
        t = time.perf_counter()
        await pilot.press("g")
        grid = screen.grid
        await page_held(pilot, grid)
        first = time.perf_counter() - t
        kind = "warm" if warm else "cold"
        say(f"  {kind} cache: first page ({grid.page_size} thumbnails): {first * 1000:7.1f} ms")
        turns = []
        rss = [rss_mib()]
        for i in range(pages):
            await window_held(pilot, grid)
            t = time.perf_counter()
            grid.action_page(1)
            await page_held(pilot, grid)
            turns.append(time.perf_counter() - t)
            if i == 4:
                rss.append(rss_mib())
        rss.append(rss_mib())
        say(f"  {kind} cache: {pages} page turns: {summary(turns)}  p95 {p95(turns):6.2f} ms")
        if not warm:
            return
        keys, turns = [], []
        await window_held(pilot, grid)
        for i in range(moves):  # right along the page, down now and then, on to the next page
            first = grid.first
            t = time.perf_counter()
            grid.action_move(1 if i % 8 else 0, 0 if i % 8 else 1)
            await pilot._wait_for_screen()  # every queued message handled: the frame is drawn
            (keys if grid.first == first else turns).append(time.perf_counter() - t)
            if grid.first != first:
                await page_held(pilot, grid)
                await window_held(pilot, grid)
        line = f"{summary(keys)}  p95 {p95(keys):6.2f} ms"
        say(f"  warm cache: {len(keys)} moves within a page, key to frame: {line}")
        if turns:
            line = f"{summary(turns)}  p95 {p95(turns):6.2f} ms"
            say(f"  warm cache: {len(turns)} moves onto the next page, key to frame: {line}")
        held = sum(2 * s.image.width * s.image.height * 3 for s in grid.held.values() if s.image)
        widgets = len(list(app.screen.walk_children(with_self=True)))
        say(
            f"  memory: {len(grid.held)} thumbnails held ({held / 1024:.0f} KiB with their "
            f"blurred twins), {widgets} widgets; RSS {rss[0]:.0f} MiB at the first page, "
            f"{rss[1]:.0f} after 5 turns, {rss[2]:.0f} after {pages}"
        )


@contextlib.contextmanager
def quiet_stdout(quiet: bool):
    """The kitty renderer sends its images to the terminal itself, headless or not: with
    ``quiet`` its bytes go to /dev/null and the figures through a copy of stdout."""
    if not quiet:
        yield print
        return
    sys.stdout.flush()
    saved = os.dup(1)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield lambda line: print(line, file=out)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        for fd in (saved, null):
            os.close(fd)
        out.close()


async def measure_grid(base: Path, n: int, moves: int, pages: int, renderers: list[str]) -> None:
    classes = {"halfcell": HalfcellImage, "sixel": SixelImage, "kitty": TGPImage}
    for name in renderers:
        print(f"grid over {n} images, {name} renderer, {SIZE[0]}x{SIZE[1]}:")
        home = base / "home"
        shutil.rmtree(home / "cache" / "thumbnails", ignore_errors=True)  # each renderer cold
        with quiet_stdout(name == "kitty") as say:
            await grid_session(base, n, moves, pages, classes[name], False, say)
            await grid_session(base, n, moves, pages, classes[name], True, say)


async def screenshot(base: Path, out: Path) -> None:
    """The README picture: generated photo-like images, the real built-in model."""
    folder = base / "photos"
    for i in range(8):
        save(photo((480, 360), seed=i), folder / f"holiday_{i:02d}.jpg", quality=90)
    for i in range(3):
        save(photo((480, 360), seed=20 + i), folder / "garden" / f"garden_{i:02d}.jpg", quality=90)
    cwd = os.getcwd()
    os.chdir(base)  # a relative folder: no temporary path on the picture
    try:
        home = resolve_home(base / "home")
        settings = ReviewSettings(scan_options=ScanOptions(workers=0), image_class=HalfcellImage)
        app = make_app("photos", home=home, settings=settings)
        t = time.perf_counter()
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, timeout=300)
            took = time.perf_counter() - t
            print(f"screenshot folder scored with the built-in model in {took:.1f} s")
            await pilot.press("down", "down")
            await settle(pilot)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(app.export_screenshot(title="nsfw-tui"))
            print(f"screenshot saved to {out}")
    finally:
        os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--pages", type=int, default=30)
    parser.add_argument("--renderers", default="halfcell,sixel,kitty")
    parser.add_argument("--screenshot", default=str(ROOT / "docs" / "screenshot.svg"))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures as they come, even through a pipe
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, terminal {SIZE[0]}x{SIZE[1]}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        t = time.perf_counter()
        make_tiny(base / "photos", args.images)
        print(f"made {args.images} images in {time.perf_counter() - t:.1f} s")
        home = resolve_home(base / "home")
        prepare_home(home)
        t = time.perf_counter()
        with Store.open(home.store_path) as store:
            result = scan_folder(base / "photos", RedScorer(), store, ScanOptions(batch_size=64))
        took = time.perf_counter() - t
        print(f"warmed the cache (fake scorer): {result.scored} scored in {took:.1f} s")
        asyncio.run(measure(base, args.images, args.moves))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory (ru_maxrss) after the 10k session: {rss:.0f} MiB")
    renderers = [r for r in args.renderers.split(",") if r]
    if renderers:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            t = time.perf_counter()
            make_tiny(base / "grid", args.images, (160, 120))
            print(f"made {args.images} 160 x 120 images in {time.perf_counter() - t:.1f} s")
            home = resolve_home(base / "home")
            prepare_home(home)
            with Store.open(home.store_path) as store:
                scan_folder(base / "grid", RedScorer(), store, ScanOptions(batch_size=64))
            asyncio.run(measure_grid(base, args.images, args.moves, args.pages, renderers))
    if args.screenshot:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(screenshot(Path(tmp), Path(args.screenshot)))


if __name__ == "__main__":
    main()
