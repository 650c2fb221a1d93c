"""The `watch` command (a live screen, or JSON lines with --headless) and `release`."""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from ..core.thresholds import format_threshold
from .options import (
    Command,
    HomeOption,
    ModelOption,
    ThresholdOption,
    check_threshold,
    console,
    err_console,
    handles_errors,
    open_store,
    overrides_argument,
)

if TYPE_CHECKING:
    from ..core.home import Home
    from ..core.scan import ScanOptions
    from ..core.scorers import Scorer
    from ..core.watch import WatchOptions

Overrides = overrides_argument("settle_s=0.5 rescan_interval_s=60")

app = typer.Typer()


@dataclass(frozen=True)
class WatchPlan:
    """A checked watch, ready to start: what the screen and headless mode both need."""

    folder: Path
    home: Home
    scorer: Scorer
    threshold: float  # the one in force: --threshold, else the config's, else the model's
    review_threshold: float | None  # --threshold (or the config's) only, for the review screen
    options: WatchOptions
    scan_options: ScanOptions
    log: Path  # --log, else the home's journal for this folder


@app.command(cls=Command)
@handles_errors
def watch(
    path: Annotated[
        Path, typer.Argument(metavar="PATH", help="Folder to watch (subfolders included).")
    ],
    overrides: Overrides = None,
    quarantine: Annotated[
        Path | None,
        typer.Option(help="Move NSFW and unreadable files here, keeping their relative path."),
    ] = None,
    threshold: ThresholdOption = None,
    model: ModelOption = None,
    log: Annotated[
        Path | None, typer.Option("--log", help="Append one JSON line per decision to FILE.jsonl.")
    ] = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="No screen: print JSON lines to stdout.")
    ] = False,
    polling: Annotated[
        bool, typer.Option("--polling", help="Poll the folder (network or bind mounts).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Log the quarantine moves without making them.")
    ] = False,
    no_catch_up: Annotated[
        bool, typer.Option("--no-catch-up", help="Skip the files already in the folder at start.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Score new and changed files in PATH as they land; log, and optionally quarantine, them."""
    from ..core.config import load_config
    from ..core.scan import ScanOptions, check_folder, inference_threads
    from ..core.watch import WatchOptions, quarantine_folder
    from ..models.registry import load_scorer, resolve_model

    cfg = load_config(None, overrides or [], section="watch")
    options = WatchOptions.from_config(cfg.watch, cfg.scan)
    if quarantine is not None:
        options.quarantine = str(quarantine)
    options.dry_run = options.dry_run or dry_run
    options.polling = options.polling or polling
    options.catch_up = options.catch_up and not no_catch_up
    options.check()
    if threshold is None and cfg.scan.threshold is not None:
        threshold = float(cfg.scan.threshold)
    check_threshold(threshold)
    if log is not None and not (log.parent if str(log.parent) else Path(".")).is_dir():
        raise NsfwTuiError(f"the folder of --log {log} does not exist")
    folder = check_folder(path)
    options.quarantine = quarantine_folder(folder, options.quarantine)
    h, store = open_store(home)
    with store:
        if store.readonly:
            raise NsfwTuiError(store.readonly_reason or "the store is read-only")
        row = resolve_model(store, model)
    if log is None:  # journalled anyway, so a kill never drops a decision from stdout
        log = h.watch_journal(folder)
        try:
            log.parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise NsfwTuiError(f"cannot create {log.parent}: {exc.strerror or exc}") from exc
    scan_options = ScanOptions.from_config(cfg.scan)
    scorer = load_scorer(
        row, threads=inference_threads(scan_options.workers), cache_dir=h.cache_dir
    )
    plan = WatchPlan(
        folder=folder,
        home=h,
        scorer=scorer,
        threshold=threshold if threshold is not None else row.threshold,
        review_threshold=threshold,
        options=options,
        scan_options=scan_options,
        log=log,
    )
    if headless:
        _watch_headless(plan)
    else:
        _watch_screen(plan)


def _watch_screen(plan: WatchPlan) -> None:
    import textual_image.renderable  # noqa: F401  (asks the terminal before Textual starts)

    from ..core.decode_pool import start_resource_tracker
    from ..tui.settings import ReviewSettings, WatchSettings
    from ..tui.watch_app import make_watch_app

    start_resource_tracker()  # before Textual swaps stderr for a capture object

    settings = WatchSettings(
        scorer=plan.scorer,
        threshold=plan.threshold,
        options=plan.options,
        log_path=plan.log,
        handle_signals=True,
        review=ReviewSettings(threshold=plan.review_threshold, scan_options=plan.scan_options),
    )
    watch_app = make_watch_app(plan.folder, home=plan.home, settings=settings)
    watch_app.run()
    if watch_app.watcher is not None:
        _print_summary(watch_app.watcher.stats(), plan.options.dry_run)
    if watch_app.return_code:
        raise typer.Exit(watch_app.return_code)


def _watch_headless(plan: WatchPlan) -> None:
    from ..core.watch import Watcher

    def print_line(decision: dict) -> None:
        sys.stdout.write(json.dumps(decision, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    watcher = Watcher(
        plan.folder,
        plan.home.store_path,
        plan.scorer,
        threshold=plan.threshold,
        options=plan.options,
        scan_options=plan.scan_options,
        on_decision=print_line,
        log_path=plan.log,
        on_notice=lambda text: err_console.print(Text(text, style="dim")),
    )
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        watcher.start()
        err_console.print(
            Text(
                f"watching {plan.folder} with {plan.scorer.id} at threshold "
                f"{format_threshold(plan.threshold)}; Ctrl+C stops"
            )
        )
        while not stop.wait(0.5):
            pass
        err_console.print(Text("stopping…"))
    finally:
        watcher.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _print_summary(watcher.stats(), plan.options.dry_run)


def _print_summary(s, dry_run: bool) -> None:
    moved = "would have quarantined" if dry_run else "quarantined"
    err_console.print(
        Text(
            f"{s.seen} decisions: {s.nsfw} NSFW, {s.sfw} SFW, {s.errors} errors; {moved} "
            f"{s.quarantined}; {s.labelled} made by labels, {s.cached} on cached scores; "
            f"{s.scored} images scored by the model; {s.pending} left for the next start's "
            "catch-up"
        )
    )


@app.command()
@handles_errors
def release(
    files: Annotated[
        list[Path] | None,
        typer.Argument(metavar="[FILES]...", help="Quarantined files to move back."),
    ] = None,
    b64: Annotated[
        list[str] | None,
        typer.Option(
            "--b64",
            help="A quarantined file named by the base64 of its bytes: the `dest_b64` of a "
            "watch log line, for a name that is not UTF-8 (repeatable).",
        ),
    ] = None,
    label: Annotated[
        str,
        typer.Option(
            help="Label recorded for the released images (sfw, nsfw or none), so that a "
            "running watcher does not quarantine them again."
        ),
    ] = "sfw",
    home: HomeOption = None,
) -> None:
    """Move quarantined files back to where they came from, and record it."""
    from ..core.names import from_b64, path_text
    from ..core.watch import release as release_file

    label = label.lower()
    if label not in ("sfw", "nsfw", "none"):
        raise NsfwTuiError(f"--label must be sfw, nsfw or none, got {label!r}")
    paths = [str(f) for f in files or []]
    for text in b64 or []:
        try:
            paths.append(from_b64(text))
        except ValueError as exc:
            raise NsfwTuiError(f"--b64: {exc}") from exc
    if not paths:
        raise NsfwTuiError("give the quarantined files to release (FILE... or --b64 NAME)")
    _, store = open_store(home)
    failed = 0
    with store:
        for f in paths:
            try:
                origin, back = release_file(store, f, label=None if label == "none" else label)
            except NsfwTuiError as exc:
                err_console.print(Text(f"error: {exc}", style="red"))
                failed += 1
                continue
            # Names as text to read; the file itself went back under its exact bytes (N1).
            note = "" if back == origin else f" ({path_text(origin)} was taken)"
            console.print(Text(f"released {path_text(f)} -> {path_text(back)}{note}"))
    if failed:
        raise typer.Exit(2)
