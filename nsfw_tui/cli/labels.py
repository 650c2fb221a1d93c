"""The store's contents: `import`, `labels` (`remove`, `undo`); the store: `backup`, `restore`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from .options import (
    Command,
    CommandGroup,
    HomeOption,
    console,
    err_console,
    fail,
    handles_errors,
    open_store,
)

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


labels_app = typer.Typer(
    name="labels",
    cls=CommandGroup,
    help="Export the current labels; `remove` and `undo` take labels back.",
)
app.add_typer(labels_app)
# Added after the group, so help lists import, labels, backup, restore in that order.
store_app = typer.Typer()
app.add_typer(store_app)


@labels_app.callback(invoke_without_command=True)
@handles_errors
def labels(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the current labels as CSV.")
    ] = None,
    imagefolder: Annotated[
        Path | None,
        typer.Option(
            help="Write the labelled set as DIR/nsfw and DIR/sfw (hard links); into a folder "
            "it wrote before, take out what is no longer labelled so."
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Export the current labels (CSV) or the curated set as an image folder."""
    from ..core.imagefolder import export_imagefolder
    from ..core.labels import export_csv

    if ctx.invoked_subcommand is not None:
        if output is not None or imagefolder is not None:
            raise NsfwTuiError(f"-o and --imagefolder do not go with `{ctx.invoked_subcommand}`")
        return
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
                    f"wrote {rep.counts['nsfw']} NSFW and {rep.counts['sfw']} SFW images under "
                    f"{imagefolder} ({rep.counts['linked']} hard links, {rep.counts['copied']} "
                    f"copies, {rep.counts['missing']} labelled "
                    f"image{'s' * (rep.counts['missing'] != 1)} no longer on disk)"
                )
            )
            if rep.taken_out:
                console.print(
                    Text(
                        f"took out {len(rep.taken_out)} files whose label changed or was "
                        f"removed: {_some(rep.taken_out)}"
                    )
                )
            if rep.foreign:
                console.print(
                    Text(
                        f"left alone {len(rep.foreign)} files that nsfw-tui did not write: "
                        f"{_some(rep.foreign)}"
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


@labels_app.command("remove", cls=Command)
@handles_errors
def labels_remove(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH...", help="Images, or folders: every image under them."),
    ],
    home: HomeOption = None,
) -> None:
    """Take the labels off images; their history is kept and `labels undo` puts them back."""
    from ..core.labels import remove_labels

    _, store = open_store(home)
    with store:
        report = remove_labels(store, list(paths))
    for where, why in report.errors:
        err_console.print(Text(f"skipped {where}: {why}", style="yellow"))
    console.print(
        Text(
            f"removed the labels of {report.removed} images ({report.had_none} had none, "
            f"{len(report.errors)} skipped)"
        )
    )


# How `labels undo` names who wrote a batch.
_SOURCES = {"import": "`import`", "human": "a person (review screen, release or labels remove)"}
_SHOWN = 20  # changes listed before asking; the rest are counted


@labels_app.command("undo")
@handles_errors
def labels_undo(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    home: HomeOption = None,
) -> None:
    """Take back the newest label batch not yet undone, restoring each image's earlier label."""
    from datetime import datetime

    _, store = open_store(home)
    with store:
        batch = store.newest_batch()
        if batch is None:
            raise fail("nothing to undo", code=1)
        changes = store.undo_preview(batch.batch)
        when = datetime.fromtimestamp(batch.created_at).strftime("%Y-%m-%d %H:%M:%S")
        who = _SOURCES.get(batch.source, batch.source)
        console.print(Text(f"the newest label batch: {len(changes)} images, by {who}, {when}"))
        for c in changes[:_SHOWN]:
            where = c.path or f"(image {c.sha256[:12]}, not seen on disk)"
            console.print(Text(f"  {where}: {_label(c.current)} -> {_label(c.restored)}"))
        if len(changes) > _SHOWN:
            console.print(Text(f"  and {len(changes) - _SHOWN} more"))
        if not yes and not typer.confirm("Undo it?", default=False, err=True):
            raise fail("nothing was changed", code=1)
        store.undo_batch(batch.batch)
    console.print(Text(f"restored the earlier labels of {len(changes)} images"))


def _some(names: list[str]) -> str:
    """The first names of a list that may be long, and how many more."""
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} and {len(names) - _SHOWN} more"


def _label(label: str | None) -> str:
    return label or "no label"


@store_app.command(cls=Command)
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


@store_app.command()
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
