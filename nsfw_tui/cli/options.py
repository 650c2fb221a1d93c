"""What every command shares: option types, the consoles, the error policy, the progress bar."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from ..core.errors import NsfwTuiError, missing_extra

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

    from ..core.home import Home
    from ..core.store import Store


class CommandGroup(typer.core.TyperGroup):
    """A command group that answers a mistyped command with the close ones, else all of them."""

    def resolve_command(self, ctx, args: list[str]):
        from difflib import get_close_matches

        name = args[0] if args else ""
        known = list(self.commands)
        # Typer itself suggests the close ones (with the same cutoff).
        unknown = name and not name.startswith("-") and name not in known
        if unknown and not get_close_matches(name, known):
            ctx.fail(f"No such command {name!r}. Commands: {', '.join(known)}.")
        return super().resolve_command(ctx, args)


class Command(typer.core.TyperCommand):
    """A command whose usage line names a required argument plainly: `PATH`, not `{PATH}`."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        import re

        pieces = super().collect_usage_pieces(ctx)
        return [re.sub(r"^\{(.+)\}((?:\.\.\.)?)$", r"\1\2", p) for p in pieces]


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


def overrides_argument(example: str):
    """The `[OVERRIDES]...` argument, with an example of the command's own section."""
    return Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[OVERRIDES]...", help=f"Config overrides as key=value, e.g. {example}."
        ),
    ]


Overrides = overrides_argument("batch_size=32 scan.workers=1")  # scan's
InputSize = Annotated[
    tuple[int, int] | None,
    typer.Option("--input-size", metavar="H W", help="Input height and width in pixels."),
]


def check_threshold(threshold: float | None) -> float | None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise NsfwTuiError(f"--threshold must be within [0, 1], got {threshold}")
    return threshold


def is_num(v: object) -> bool:
    """A metric worth printing as a number (True and False are not)."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def progress_bar(*, transient: bool = False) -> Progress:
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


def new_table(*columns: str, **kwargs) -> Table:
    """A Rich table, imported when a command prints one: `--help` never pays for rich.table."""
    from rich.table import Table

    return Table(*columns, **kwargs)


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    title: str | None = None,
    whole: Sequence[str] = (),
    right: Sequence[str] = (),
) -> None:
    """Rows as a Rich table on a terminal, else as plain tab-separated lines under a header.

    Columns named in ``whole`` (ids a person copies into the next command) are never cut
    or wrapped, however narrow the terminal: other columns fold first. Piped output has no
    box drawing and no title, so `cut -f2` or a spreadsheet reads it as it is.
    """
    rows = [[str(cell) for cell in row] for row in rows]
    if not console.is_terminal:
        # Written as they are: Rich would expand the tabs into spaces.
        lines = [columns, *([cell.replace("\t", " ") for cell in row] for row in rows)]
        console.file.write("".join("\t".join(line) + "\n" for line in lines))
        return
    table = new_table(title=title)
    for i, name in enumerate(columns):
        widest = max((len(row[i]) for row in rows), default=0)
        if name in whole:
            table.add_column(name, no_wrap=True, min_width=max(widest, len(name)))
        else:
            table.add_column(name, justify="right" if name in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(Text(f"error: {message}", style="red"))
    return typer.Exit(code)


def handles_errors(fn):
    """Every expected failure becomes one clear line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NsfwTuiError as exc:
            raise fail(str(exc)) from None
        except ModuleNotFoundError as exc:
            line = missing_extra(exc)
            if line is None:
                raise
            raise fail(line) from None
        except KeyboardInterrupt:
            err_console.print("Cancelled; everything finished before Ctrl+C is saved.")
            raise typer.Exit(130) from None

    return wrapper


def open_store(home: Path | None) -> tuple[Home, Store]:
    """The home and its store, checked and migrated; the built-in model registered."""
    from ..core.home import resolve_home
    from ..core.scorers import ensure_builtin
    from ..core.store import Store

    h = resolve_home(home)
    store = Store.open(h.store_path)
    if store.readonly_reason:
        err_console.print(Text(f"warning: {store.readonly_reason}", style="yellow"))
    else:
        ensure_builtin(store)
    return h, store
