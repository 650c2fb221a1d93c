"""The `nsfw-tui` command: parses arguments, calls core and trainer, prints results."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .core.errors import NsfwTuiError


class DefaultToOpen(typer.core.TyperGroup):
    """`nsfw-tui ./photos` means `nsfw-tui open ./photos`: Typer has no default command."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["open", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="nsfw-tui",
    cls=DefaultToOpen,
    help="Score, review and curate images for NSFW content; fine-tune on your own labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List models and choose the active one.", no_args_is_help=False)
app.add_typer(models_app, name="models")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Folder for the store and models (default: $NSFW_TUI_HOME, else user data).",
        file_okay=False,
    ),
]
ThresholdOption = Annotated[
    float | None, typer.Option(help="Decision threshold (default: the model's own).")
]
ModelOption = Annotated[str | None, typer.Option(help="Model id (default: the active one).")]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Config overrides as key=value, e.g. batch_size=32 scan.workers=1."),
]


def progress_bar(*, transient: bool = False):
    """The one Rich progress layout of the CLI, on stderr so stdout stays parseable."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


def check_threshold(threshold: float | None) -> float | None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise NsfwTuiError(f"--threshold must be within [0, 1], got {threshold}")
    return threshold


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(Text(f"error: {message}", style="red"))
    return typer.Exit(code)


# Libraries that only an extra brings: the light install scores without any of them.
EXTRAS = {
    "torch": "train",
    "torchvision": "train",
    "timm": "train",
    "onnxscript": "train",
    "safetensors": "train",
    "matplotlib": "train",
    "mlflow": "mlflow",
    "fastapi": "serve",
    "uvicorn": "serve",
}


def handles_errors(fn):
    """Every expected failure becomes one clear line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NsfwTuiError as exc:
            raise fail(str(exc)) from None
        except ModuleNotFoundError as exc:
            extra = EXTRAS.get((exc.name or "").split(".")[0])
            if extra is None:
                raise
            raise fail(
                f"this command needs the {extra} extra ({exc.name} is not installed): "
                f"pip install 'nsfw-tui[{extra}]'"
            ) from None
        except KeyboardInterrupt:
            err_console.print("Cancelled; everything finished before Ctrl+C is saved.")
            raise typer.Exit(130) from None

    return wrapper


def _open_store(home: Path | None):
    from .core.home import resolve_home
    from .core.scorers import ensure_builtin
    from .core.store import Store

    h = resolve_home(home)
    store = Store.open(h.store_path)
    if store.readonly_reason:
        err_console.print(Text(f"warning: {store.readonly_reason}", style="yellow"))
    else:
        ensure_builtin(store)
    return h, store


# -- the review screen ---------------------------------------------------------------------


def _run_app(folder: Path, home: Path | None, blur: bool, threshold: float | None) -> None:
    h, store = _open_store(home)  # checks and migrates before the screen takes over
    store.close()
    # textual-image asks the terminal what it can draw; it must do so before Textual starts.
    import textual_image.renderable  # noqa: F401

    from .core.decode_pool import start_resource_tracker

    start_resource_tracker()  # before Textual swaps stderr for a capture object

    from .tui.app import make_app

    make_app(folder, home=h, blur=blur, threshold=threshold).run()


@app.command("open")
@handles_errors
def open_(
    path: Annotated[Path, typer.Argument(help="Folder of images to review.")],
    blur: Annotated[
        bool, typer.Option("--blur/--no-blur", help="Safe mode: blur likely-NSFW previews.")
    ] = True,
    threshold: ThresholdOption = None,
    home: HomeOption = None,
) -> None:
    """Review a folder: `nsfw-tui PATH` opens the full-screen review screen."""
    from .core.scan import check_folder

    check_threshold(threshold)
    _run_app(check_folder(path), home, blur, threshold)


@app.command()
@handles_errors
def demo(
    blur: Annotated[
        bool, typer.Option("--blur/--no-blur", help="Safe mode: blur likely-NSFW previews.")
    ] = True,
    home: HomeOption = None,
) -> None:
    """Open generated sample images in a home of its own (HOME/demo); your store stays as it is."""
    from .core.demo import prepare_demo
    from .core.home import resolve_home

    demo_home, folder = prepare_demo(resolve_home(home))
    _run_app(folder, demo_home.root, blur, None)


# -- scan ----------------------------------------------------------------------------------


@app.command()
@handles_errors
def scan(
    path: Annotated[Path, typer.Argument(help="Folder of images to score.")],
    overrides: Overrides = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write FILE.csv or FILE.json.")
    ] = None,
    threshold: ThresholdOption = None,
    model: ModelOption = None,
    pattern: Annotated[
        str | None, typer.Option(help="Only files whose name matches this glob, e.g. '*.jpg'.")
    ] = None,
    no_recursive: Annotated[bool, typer.Option("--no-recursive", help="Skip subfolders.")] = False,
    home: HomeOption = None,
) -> None:
    """Score every image under PATH with the active model (cached results are reused)."""

    from nsfw_tui.models.registry import load_scorer, resolve_model

    from .core.config import load_config
    from .core.report import decisions, summary_counts, write_report
    from .core.scan import (
        ScanOptions,
        check_folder,
        inference_threads,
        scan_files,
        walk_images,
    )

    cfg = load_config(None, overrides or [], section="scan").scan
    if threshold is None and cfg.threshold is not None:
        threshold = float(cfg.threshold)
    check_threshold(threshold)
    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise NsfwTuiError(f"--output must end in .csv or .json, got {output.name}")
    if output is not None and not output.resolve().parent.is_dir():
        # Say so before the scan, not after minutes of scoring.
        raise NsfwTuiError(f"the output folder {output.parent} does not exist")
    folder = check_folder(path)
    _, store = _open_store(home)
    with store:
        row = resolve_model(store, model)
        options = ScanOptions.from_config(cfg)
        scorer = load_scorer(row, threads=inference_threads(options.workers))
        thr = threshold if threshold is not None else row.threshold
        walk_errors: list[tuple[str, str]] = []
        paths = list(
            walk_images(
                folder,
                pattern=pattern or cfg.pattern,
                recursive=not no_recursive and cfg.recursive,
                errors=walk_errors,
            )
        )
        started = time.perf_counter()
        with progress_bar(transient=True) as progress:
            task = progress.add_task("Scoring", total=len(paths))
            result = scan_files(
                paths,
                scorer,
                store,
                options,
                on_progress=lambda done, total: progress.update(task, completed=done),
            )
        elapsed = time.perf_counter() - started
        result.walk_errors = walk_errors
        rows = decisions(result.items, store, thr)
    if output is not None:
        write_report(rows, output)
    counts = summary_counts(rows)
    for where, why in walk_errors:
        err_console.print(Text(f"skipped {where}: {why}", style="yellow"))
    if output is None:
        _print_table(rows, folder)
    msg = (
        f"{len(rows)} images with {row.id} at threshold {thr:g}: {counts['nsfw']} NSFW, "
        f"{counts['sfw']} SFW, {counts['error']} unreadable; {result.reused} reused from the "
        f"cache, {result.scored} scored in {elapsed:.1f} s"
    )
    console.print(Text(msg))
    if output is not None:
        console.print(Text(f"wrote {output}"))


def _print_table(rows: list[dict], folder: Path) -> None:
    table = Table(title=f"Scan results: {folder}")
    table.add_column("image", overflow="fold")
    for name in ("probability", "class", "label"):
        table.add_column(name, no_wrap=True)
    table.add_column("error", overflow="fold")
    shown = sorted(rows, key=lambda r: (r["probability"] is not None, -(r["probability"] or 0)))
    for r in shown[:50]:
        prob = "" if r["probability"] is None else f"{r['probability']:.3f}"
        style = "red" if r["class_name"] == "NSFW" else ("yellow" if r["error"] else "green")
        table.add_row(
            Text(os.path.relpath(r["image_path"], folder)),
            prob,
            Text(r["class_name"], style=style),
            Text(r["label"] or ""),
            Text(r["error"] or ""),
        )
    if len(rows) > 50:
        table.caption = f"{len(rows) - 50} more; use -o FILE.csv for all"
    console.print(table)


# -- import and labels ---------------------------------------------------------------------


@app.command("import")
@handles_errors
def import_(
    path: Annotated[
        Path, typer.Argument(help="A folder of images, or a root with nsfw/ and sfw/.")
    ],
    label: Annotated[
        str | None, typer.Option(help="Label for every image under PATH: nsfw or sfw.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Label known images: `import DIR --label nsfw`, or `import ROOT` with nsfw/ and sfw/."""
    from .core.labels import import_folders, plan_import

    if label is not None and label.lower() not in ("nsfw", "sfw"):
        raise NsfwTuiError(f"--label must be nsfw or sfw, got {label!r}")
    plan = plan_import(path, label.lower() if label else None)
    _, store = _open_store(home)
    with store:
        report = import_folders(store, plan)
    for where, why in report.errors:
        err_console.print(Text(f"skipped {where}: {why}", style="yellow"))
    console.print(
        Text(
            f"labelled {report.labelled['nsfw']} NSFW and {report.labelled['sfw']} SFW images "
            f"({report.unchanged} already had that label, {report.kept_human} kept a person's "
            f"different label, {len(report.errors)} skipped)"
        )
    )


@app.command()
@handles_errors
def labels(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the current labels as CSV.")
    ] = None,
    imagefolder: Annotated[
        Path | None,
        typer.Option(help="Write the labelled set as DIR/nsfw and DIR/sfw (hard links)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Export the current labels (CSV) or the curated set as an image folder."""
    from .core.labels import export_csv, export_imagefolder

    _, store = _open_store(home)
    with store:
        rows = store.labelled_files()
        if output is not None:
            export_csv(rows, output)
            console.print(Text(f"wrote {len(rows)} labels to {output}"))
        if imagefolder is not None:
            rep = export_imagefolder(rows, imagefolder)
            console.print(
                Text(
                    f"wrote {rep['nsfw']} NSFW and {rep['sfw']} SFW images under {imagefolder} "
                    f"({rep['linked']} hard links, {rep['copied']} copies, "
                    f"{rep['missing']} labelled images no longer on disk)"
                )
            )
        if output is None and imagefolder is None:
            by = {"nsfw": 0, "sfw": 0}
            for r in rows:
                by[r.label] += 1
            console.print(Text(f"{by['nsfw']} NSFW and {by['sfw']} SFW labelled images"))


# -- models --------------------------------------------------------------------------------


@models_app.callback(invoke_without_command=True)
@handles_errors
def models_list(ctx: typer.Context, home: HomeOption = None) -> None:
    """List models; the active one is marked with *."""
    if ctx.invoked_subcommand is not None:
        return
    _, store = _open_store(home)
    with store:
        table = Table("", "id", "kind", "threshold", "metrics", "path")
        for m in store.models():
            metrics = ", ".join(f"{k}={v:.3f}" for k, v in m.metrics.items() if _is_num(v))
            table.add_row(
                "*" if m.active else "",
                Text(m.id),
                m.kind,
                f"{m.threshold:g}",
                Text(metrics),
                Text(m.path or "(bundled)"),
            )
        console.print(table)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@models_app.command("use")
@handles_errors
def models_use(
    model_id: Annotated[str, typer.Argument(help="Model id, as listed by `nsfw-tui models`.")],
    home: HomeOption = None,
) -> None:
    """Make MODEL_ID the active model."""
    from .core.active_model import change_line

    _, store = _open_store(home)
    with store:
        before = store.active_model()
        store.set_active(model_id)
        console.print(Text(change_line(before, store.active_model())))


# -- backups -------------------------------------------------------------------------------


@app.command()
@handles_errors
def backup(
    file: Annotated[Path, typer.Argument(help="New file to write the backup to.")],
    home: HomeOption = None,
) -> None:
    """Back up the store with SQLite's online backup API (safe while other commands run)."""
    _, store = _open_store(home)
    with store:
        store.backup(file)
    console.print(Text(f"backed up {store.path} to {file}"))


@app.command()
@handles_errors
def restore(
    file: Annotated[
        Path | None, typer.Argument(help="A backup written by `nsfw-tui backup`.")
    ] = None,
    empty: Annotated[
        bool, typer.Option("--empty", help="Start a new, empty store on purpose.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --empty.")] = False,
    home: HomeOption = None,
) -> None:
    """Put a checked backup into the store (safe while other commands run); the current
    content is kept beside it first."""
    from .core.home import resolve_home
    from .core.store_backup import restore as restore_store

    if (file is None) == (not empty):
        raise NsfwTuiError("give a backup file to restore, or --empty for a new, empty store")
    h = resolve_home(home)
    if empty and not yes:
        question = (
            f"Start a new, empty store at {h.store_path}? Its current content, if any, is kept "
            "beside it"
        )
        if not typer.confirm(question, default=False, err=True):
            raise fail("nothing was changed", code=1)
    kept, store_id = restore_store(file, h.store_path, empty=empty)
    what = "a new, empty store" if empty else str(file)
    console.print(Text(f"restored {h.store_path} from {what} (store {store_id})"))
    if kept:
        console.print(Text(f"the previous content was kept as {kept}"))


# Commands that live in their own modules register themselves on `app` when imported.
from . import cli_export, cli_serve, cli_train, cli_watch  # noqa: E402, F401


def main() -> None:
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()


if __name__ == "__main__":
    main()
