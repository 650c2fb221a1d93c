"""The store's contents: `import` and `labels`, and the whole store: `backup` and `restore`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from .options import Command, HomeOption, console, err_console, fail, handles_errors, open_store

app = typer.Typer()


@app.command("import", cls=Command)
@handles_errors
def import_(
    path: Annotated[
        Path,
        typer.Argument(metavar="PATH", help="A folder of images, or a root with nsfw/ and sfw/."),
    ],
    label: Annotated[
        str | None, typer.Option(help="Label for every image under PATH: nsfw or sfw.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Label known images: `import DIR --label nsfw`, or `import ROOT` with nsfw/ and sfw/."""
    from ..core.labels import import_folders, plan_import

    if label is not None and label.lower() not in ("nsfw", "sfw"):
        raise NsfwTuiError(f"--label must be nsfw or sfw, got {label!r}")
    plan = plan_import(path, label.lower() if label else None)
    _, store = open_store(home)
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
    from ..core.labels import export_csv, export_imagefolder

    _, store = open_store(home)
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
                    f"{rep['missing']} labelled image{'s' * (rep['missing'] != 1)} no longer "
                    "on disk)"
                )
            )
        if output is None and imagefolder is None:
            by = {"nsfw": 0, "sfw": 0}
            for r in rows:
                by[r.label] += 1
            n = by["nsfw"] + by["sfw"]
            console.print(
                Text(f"{by['nsfw']} NSFW and {by['sfw']} SFW labelled image{'s' * (n != 1)}")
            )


@app.command(cls=Command)
@handles_errors
def backup(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="New file to write the backup to.")],
    home: HomeOption = None,
) -> None:
    """Back up the store with SQLite's online backup API (safe while other commands run)."""
    _, store = open_store(home)
    with store:
        store.backup(file)
    console.print(Text(f"backed up {store.path} to {file}"))


@app.command()
@handles_errors
def restore(
    file: Annotated[
        Path | None, typer.Argument(metavar="[FILE]", help="A backup written by `nsfw-tui backup`.")
    ] = None,
    empty: Annotated[
        bool, typer.Option("--empty", help="Start a new, empty store on purpose.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --empty.")] = False,
    home: HomeOption = None,
) -> None:
    """Put a checked backup into the store (safe while other commands run); the current
    content is kept beside it first."""
    from ..core.home import resolve_home
    from ..core.store_backup import restore as restore_store

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
