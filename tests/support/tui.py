"""Helpers for the Textual tests: a fake scorer with known scores, the app factory, waiting."""

from __future__ import annotations

import contextlib
import io
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from textual.pilot import Pilot
from textual.worker import WorkerCancelled, WorkerFailed, WorkerState
from textual_image.widget import HalfcellImage

from nsfw_tui.core.home import Home, resolve_home
from nsfw_tui.core.images import hash_file
from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.scan import ScanOptions
from nsfw_tui.core.scorers import ScoreBatch, ensure_builtin
from nsfw_tui.core.store import SCHEMA_VERSION, ScoreRecord, Store
from nsfw_tui.core.structure import CHECK_VERSION
from nsfw_tui.core.watch import WatchOptions
from nsfw_tui.tui.app import NsfwTuiApp, make_app
from nsfw_tui.tui.screens.review import ReviewScreen
from nsfw_tui.tui.settings import ReviewSettings, WatchSettings
from nsfw_tui.tui.watch_app import WatchApp, make_watch_app
from nsfw_tui.tui.widgets.image_list import HEADER

FAKE_ID = "fake"
FAKE_THRESHOLD = 0.5


class RedScorer:
    """P(nsfw) = mean red channel / 255: on a solid-colour image the test knows it exactly.

    ``inverse`` scores 1 - red/255 instead (a second, disagreeing model). ``delay`` sleeps
    that long per batch; ``fail_on`` raises on that call number (1 = the first batch).
    """

    preprocessing = IMAGENET(32)  # bilinear stretch: a solid colour stays exact
    default_threshold = FAKE_THRESHOLD

    def __init__(
        self,
        model_id: str = FAKE_ID,
        *,
        inverse: bool = False,
        delay: float = 0.0,
        fail_on: int | None = None,
    ) -> None:
        self.id = model_id
        self.inverse = inverse
        self.delay = delay
        self.fail_on = fail_on
        self.calls = 0
        self.frames = 0

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        self.calls += 1
        self.frames += len(pixels)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and self.calls == self.fail_on:
            raise RuntimeError("fake scorer exploded on [bold]purpose[/bold]")
        red = pixels[..., 0].astype(np.float64).mean(axis=(1, 2)) / 255.0
        return ScoreBatch(1.0 - red if self.inverse else red, None)


def solid(path: Path, red: int, size: tuple[int, int] = (24, 16)) -> Path:
    """A solid-colour PNG whose fake score is exactly red / 255."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (red, 90, 160)).save(path)
    return path


# name -> red channel: name order differs from probability order on purpose.
# No two scores are equally far from 0.5, so every sort order is unambiguous.
SCENES = {
    "beach.png": 115,  # 0.451
    "fire.png": 250,  # 0.980
    "forest.png": 38,  # 0.149
    "lake.png": 0,  # 0.0
    "party.png": 145,  # 0.569
    "sunset.png": 204,  # 0.8
}


def scene_folder(folder: Path, scenes: dict[str, int] | None = None) -> dict[str, float]:
    """Draw the scenes into ``folder``; returns file name -> the exact fake probability."""
    scenes = SCENES if scenes is None else scenes
    folder.mkdir(parents=True, exist_ok=True)
    for name, red in scenes.items():
        solid(folder / name, red)
    return {name: red / 255.0 for name, red in scenes.items()}


def prepare_home(
    home: Home, model_ids: Sequence[str] = (FAKE_ID,), threshold: float = FAKE_THRESHOLD
) -> None:
    """Register the fake models in the store and make the first one active.

    The screen reads cached predictions for the *active* model's id, and the scan caches
    them under the *scorer's* id: with both "fake", a restart answers from the cache.
    """
    with Store.open(home.store_path) as store:
        ensure_builtin(store)
        for i, model_id in enumerate(model_ids):
            store.add_model(model_id, "onnx", threshold=threshold, activate=i == 0)


def make_test_app(
    tmp_path: Path,
    folder: str | Path,
    *,
    scorer: RedScorer | None = None,
    scorers: Iterable[RedScorer] = (),
    batch_size: int = 16,
    blur: bool = True,
    threshold: float | None = None,
) -> NsfwTuiApp:
    """The app over ``folder`` with fake scorers, inline decoding and the half-cell renderer.

    ``app.scorers`` maps model id -> scorer; ``app.notes`` records every notification as
    (severity, title, message), since Textual's own list drops them when they time out.
    """
    all_scorers = [scorer or RedScorer(), *scorers]
    by_id = {s.id: s for s in all_scorers}
    home = resolve_home(tmp_path / "home")
    prepare_home(home, list(by_id))
    settings = ReviewSettings(
        blur=blur,
        threshold=threshold,
        scan_options=ScanOptions(workers=0, batch_size=batch_size),
        scorer_factory=lambda row: by_id[row.id],
        image_class=HalfcellImage,
    )
    app = make_app(folder, home=home, settings=settings)
    app.scorers = by_id
    return record_notes(app)


def record_notes(app: NsfwTuiApp) -> NsfwTuiApp:
    """Keep every notification in ``app.notes`` as (severity, title, message): Textual's own
    list drops them when they time out."""
    app.notes = []
    notify = app.notify

    def recording_notify(message, *, title="", severity="information", **kwargs):
        app.notes.append((severity, title, str(message)))
        notify(message, title=title, severity=severity, **kwargs)

    app.notify = recording_notify
    return app


def review_screen(app: NsfwTuiApp) -> ReviewScreen:
    for screen in app.screen_stack:
        if isinstance(screen, ReviewScreen):
            return screen
    raise AssertionError("no review screen on the stack")


def busy(app: NsfwTuiApp) -> bool:
    return any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers)


async def wait_for(pilot: Pilot, condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Let the app run until ``condition()`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        await pilot.pause(0.02)


async def settle(pilot: Pilot, timeout: float = 20.0) -> ReviewScreen:
    """Wait until the folder is loaded, scored, and every worker (previews too) is done."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(WorkerCancelled, WorkerFailed):
            await app.workers.wait_for_complete()  # an exclusive worker cancels its elder
        await pilot.pause()
        screen = review_screen(app)
        review = screen.review
        if (
            review is not None
            and screen.progress is None
            and not any(r.status == "pending" for r in review.rows)
            and not busy(app)
        ):
            await pilot.pause()
            if not busy(app):
                return screen
        if time.monotonic() > deadline:
            raise AssertionError("the app did not finish loading and scoring in time")
        await pilot.pause(0.02)


def prefill(home: Home, paths: Iterable[Path], probability: Callable[[Path], float]) -> None:
    """Cache files and predictions for the active fake model, as a finished scan would."""
    records = []
    for p in paths:
        st = p.stat()
        sha, _ = hash_file(str(p))
        records.append(
            ScoreRecord(
                path=str(p),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                sha256=sha,
                probability=probability(p),
                model_id=FAKE_ID,
                width=4,
                height=4,
                format="PNG",
                n_frames=1,
                checked=CHECK_VERSION,
            )
        )
    with Store.open(home.store_path) as store:
        store.record_files(records)


def make_readonly(home: Home) -> None:
    """Mark the store as written by a newer nsfw-tui: it opens read-only from now on."""
    conn = sqlite3.connect(home.store_path)
    try:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        conn.commit()
    finally:
        conn.close()


def labels_by_name(home: Home) -> dict[str, str]:
    """Current labels keyed by file name, read on a connection of the test's own."""
    with Store.open(home.store_path, check=False) as store:
        out = {}
        for item in store.labelled_files():
            if item.path:
                out[Path(item.path).name] = item.label
        return out


def labels_by_sha(home: Home) -> dict[str, str]:
    with Store.open(home.store_path, check=False) as store:
        return {sha: ev.label for sha, ev in store.current_labels().items()}


def sha_of(path: Path) -> str:
    return hash_file(str(path))[0]


def screen_text(app: NsfwTuiApp) -> str:
    """Everything the screen would write to the terminal, as plain text (control codes kept)."""
    console = Console(
        width=app.size.width,
        height=app.size.height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


def row_text(screen: ReviewScreen, index: int) -> str:
    """The text the image list draws for visible row ``index`` (under its header line)."""
    strip = screen.images.render_line(index + HEADER)
    return "".join(seg.text for seg in strip)


# `python -c CLI_WITH_FAKE_SCORER ARGS...` runs the real `nsfw-tui ARGS...` in a child process
# with RedScorer for every model (run from the repository root).
CLI_WITH_FAKE_SCORER = (
    "import sys; sys.path.insert(0, 'tests')\n"
    "import nsfw_tui.models.registry as reg\n"
    "from support.tui import RedScorer\n"
    "reg.load_scorer = lambda row, **kw: RedScorer()\n"
    "from nsfw_tui.cli import main\n"
    "sys.argv = ['nsfw-tui'] + sys.argv[1:]\n"
    "main()\n"
)


def headless_watch(inbox: Path, home: Home) -> tuple[subprocess.Popen, queue.Queue[str]]:
    """A real `nsfw-tui watch --headless` child with the fake scorer, and its stdout lines."""
    argv = [sys.executable, "-c", CLI_WITH_FAKE_SCORER, "watch", str(inbox), "--headless"]
    argv += ["--home", str(home.root), "settle_s=0.3"]
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        argv, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    return proc, lines


def watch_app(inbox: Path, tmp_path: Path, **options) -> WatchApp:
    """The watch screen over ``inbox`` with the fake scorer and inline decoding."""
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    scorer = RedScorer()
    settings = WatchSettings(
        scorer=scorer,
        threshold=0.5,
        options=WatchOptions(settle_s=0.3, supervise_interval_s=0.2, **options),
        log_path=tmp_path / "w.jsonl",
        review=ReviewSettings(
            scan_options=ScanOptions(workers=0),
            scorer_factory=lambda row: scorer,
            image_class=HalfcellImage,
        ),
    )
    return make_watch_app(inbox, home=home, settings=settings)
