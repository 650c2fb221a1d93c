"""The `dupes` command: near-duplicate groups of a folder, as a table or CSV."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from .options import (
    Command,
    HomeOption,
    ModelOption,
    console,
    err_console,
    handles_errors,
    new_table,
    open_store,
    overrides_argument,
    progress_bar,
)

app = typer.Typer()


@app.command(cls=Command)
@handles_errors
def dupes(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Folder of images to group.")],
    overrides: overrides_argument("threshold=0.9 dupes.phash_distance=8") = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write FILE.csv.")] = None,
    model: ModelOption = None,
    home: HomeOption = None,
) -> None:
    """List groups of exact and near-duplicate images under PATH (scores what is not cached)."""

    from ..core.config import load_config
    from ..core.config_schema import DupesConfig
    from ..core.dupes import file_groups, near_duplicates, write_groups
    from ..core.names import path_text
    from ..core.scan import ScanOptions, check_folder, inference_threads, scan_folder
    from ..models.registry import load_scorer, resolve_model

    cfg = load_config(None, overrides or [], section="dupes")
    settings = DupesConfig.from_config(cfg.dupes)
    if output is not None and output.suffix.lower() != ".csv":
        raise NsfwTuiError(f"--output must end in .csv, got {output.name}")
    if output is not None and not output.resolve().parent.is_dir():
        raise NsfwTuiError(f"the output folder {output.parent} does not exist")
    folder = check_folder(path)
    h, store = open_store(home)
    with store:
        row = resolve_model(store, model)
        options = ScanOptions.from_config(cfg.scan)
        scorer = load_scorer(row, threads=inference_threads(options.workers), cache_dir=h.cache_dir)
        with progress_bar(transient=True) as progress:
            task = progress.add_task("Scoring", total=None)
            result = scan_folder(
                folder,
                scorer,
                store,
                options,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
            paths: dict[str, list[str]] = {}
            for item in result.items:
                if item.sha256 and not item.error_kind:
                    paths.setdefault(item.sha256, []).append(item.path)
            hashing = progress.add_task("Hashing images without features", total=None)
            groups = near_duplicates(
                store,
                list(paths),
                settings.threshold,
                settings.phash_distance,
                paths={sha: files[0] for sha, files in paths.items()},
                on_progress=lambda d, t: progress.update(hashing, completed=d, total=t),
            )
    found = file_groups(groups, paths)
    unread = sum(1 for item in result.items if item.error_kind)
    if output is not None:
        write_groups(found, output, path_text)
    else:
        _print_groups(found, folder)
    files = sum(len(g.files) for g in found)
    msg = (
        f"{len(found)} groups of duplicates ({files} files) among {_count(paths)} files; "
        f"{groups.by_features} images compared by features (cosine >= {settings.threshold:g}), "
        f"{groups.by_hash} by perceptual hash (<= {settings.phash_distance} bits)"
    )
    console.print(Text(msg))
    if groups.unchecked:  # no features, and no pattern to hash (a flat image) or unreadable
        n = len(groups.unchecked)
        err_console.print(Text(f"{n} image{'s' * (n != 1)} could not be compared"))
    if unread:
        err_console.print(
            Text(
                f"{unread} file{'s' * (unread != 1)} could not be read (left out; `scan` says why)"
            )
        )
    if output is not None:
        console.print(Text(f"wrote {output}"))


def _count(paths: dict[str, list[str]]) -> int:
    return sum(len(files) for files in paths.values())


def _print_groups(found, folder: Path) -> None:
    from ..core.names import path_text

    table = new_table(title=f"Duplicates: {folder}")
    for name in ("group", "size", "image", "by"):
        table.add_column(name, overflow="fold")
    for number, group in enumerate(found[:50], 1):
        for i, (path, _) in enumerate(group.files):
            first = i == 0
            table.add_row(
                str(number) if first else "",
                str(len(group.files)) if first else "",
                Text(path_text(os.path.relpath(path, folder))),
                group.similar_by if first else "",
            )
    if len(found) > 50:
        table.caption = f"{len(found) - 50} more groups; use -o FILE.csv for all"
    console.print(table)
