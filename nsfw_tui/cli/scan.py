"""The `scan` command: batch scoring of a folder to a table, CSV or JSON."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from .options import (
    Command,
    HomeOption,
    ModelOption,
    Overrides,
    ThresholdOption,
    check_threshold,
    console,
    err_console,
    handles_errors,
    new_table,
    open_store,
    progress_bar,
)

app = typer.Typer()


@app.command(cls=Command)
@handles_errors
def scan(
    path: Annotated[
        str,
        typer.Argument(
            metavar="PATH",
            help="Folder of images to score; with --engine ray also a glob, a manifest "
            "(.parquet/.csv), .tar shards or an object store URI.",
        ),
    ],
    overrides: Overrides = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="Write FILE.csv or FILE.json; with --engine ray, OUT/ (Parquet) too.",
        ),
    ] = None,
    threshold: ThresholdOption = None,
    model: ModelOption = None,
    pattern: Annotated[
        str | None, typer.Option(help="Only files whose name matches this glob, e.g. '*.jpg'.")
    ] = None,
    no_recursive: Annotated[bool, typer.Option("--no-recursive", help="Skip subfolders.")] = False,
    home: HomeOption = None,
    engine: Annotated[
        str, typer.Option(help="local, or ray: Ray Data on this machine or a cluster.")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join (auto, ray://HOST:PORT); default $RAY_ADDRESS."),
    ] = None,
    ray_workers: Annotated[
        int | None, typer.Option(help="Scoring processes on Ray (default: one per CPU).")
    ] = None,
    features: Annotated[
        bool, typer.Option("--features", help="Ray: also write the pooled float16 features.")
    ] = False,
) -> None:
    """Score every image under PATH with the active model (cached results are reused)."""

    from ..core.config import load_config
    from ..core.names import path_text
    from ..core.report import decisions, summary_counts, write_report
    from ..core.scan import ScanOptions, check_folder, inference_threads, scan_folder
    from ..models.registry import load_scorer, resolve_model

    cfg = load_config(None, overrides or [], section="scan").scan
    if threshold is None and cfg.threshold is not None:
        threshold = float(cfg.threshold)
    check_threshold(threshold)
    if engine not in ("local", "ray"):
        raise NsfwTuiError(f"--engine must be local or ray, got {engine}")
    if engine == "ray":
        from .scale import scan_on_ray

        return scan_on_ray(
            path,
            output,
            cfg=cfg,
            model=model,
            threshold=threshold,
            pattern=pattern or cfg.pattern,
            recursive=cfg.recursive and not no_recursive,
            address=address,
            workers=ray_workers,
            features=features,
            home=home,
        )
    if address or ray_workers or features:
        raise NsfwTuiError("--address, --ray-workers and --features need --engine ray")
    output = Path(output) if output is not None else None
    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise NsfwTuiError(f"--output must end in .csv or .json, got {output.name}")
    if output is not None and not output.resolve().parent.is_dir():
        # Say so before the scan, not after minutes of scoring.
        raise NsfwTuiError(f"the output folder {output.parent} does not exist")
    folder = check_folder(path)
    h, store = open_store(home)
    with store:
        row = resolve_model(store, model)
        options = ScanOptions.from_config(cfg)
        options.pattern = pattern or options.pattern  # the command line's word beats the config
        options.recursive = options.recursive and not no_recursive
        scorer = load_scorer(row, threads=inference_threads(options.workers), cache_dir=h.cache_dir)
        thr = threshold if threshold is not None else row.threshold
        started = time.perf_counter()
        with progress_bar(transient=True) as progress:
            task = progress.add_task("Scoring", total=None)  # the total is known after the walk
            result = scan_folder(
                folder,
                scorer,
                store,
                options,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        elapsed = time.perf_counter() - started
        rows = decisions(result.items, store, thr)
    if output is not None:
        write_report(rows, output)
    counts = summary_counts(rows)
    for issue in result.walk_errors:  # rows of their own too; told here as they stand out
        err_console.print(
            Text(f"not scored {path_text(issue.path)}: {issue.reason}", style="yellow")
        )
    if not rows:  # an empty table and "0 images" would look like a failure to read them
        err_console.print(Text(f"no images found in {path_text(str(folder))}"))
        if output is not None:
            console.print(Text(f"wrote {output}"))
        return
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
    table = new_table(title=f"Scan results: {folder}")
    table.add_column("image", overflow="fold")
    for name in ("probability", "class", "label"):
        table.add_column(name, no_wrap=True)
    videos = any(r.get("frame_time") is not None for r in rows)
    if videos:  # where a video's probability comes from: its highest-scoring frame
        table.add_column("frame", no_wrap=True)
    table.add_column("error", overflow="fold")
    shown = sorted(rows, key=lambda r: (r["probability"] is not None, -(r["probability"] or 0)))
    for r in shown[:50]:
        prob = "" if r["probability"] is None else f"{r['probability']:.3f}"
        style = "red" if r["class_name"] == "NSFW" else ("yellow" if r["error"] else "green")
        cells = [
            Text(os.path.relpath(r["image_path"], folder)),
            prob,
            Text(r["class_name"], style=style),
            Text(r["label"] or ""),
        ]
        if videos:
            at = r.get("frame_time")
            cells.append("" if at is None else f"{at:.2f} s")
        table.add_row(*cells, Text(r["error"] or ""))
    if len(rows) > 50:
        table.caption = f"{len(rows) - 50} more; use -o FILE.csv for all"
    console.print(table)
