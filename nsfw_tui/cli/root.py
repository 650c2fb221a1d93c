"""The root `nsfw-tui` app: joins each command group in the order `--help` lists them."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from . import dupes, evaluate, export, labels, models, review, scale, scan, serve, train, watch
from .options import CommandGroup


class DefaultToOpen(CommandGroup):
    """`nsfw-tui ./photos` means `nsfw-tui open ./photos`: Typer has no default command.

    Only a first word that exists or holds a path separator is a folder: `nsfw-tui scna` is
    a mistyped command (with a suggestion), while `nsfw-tui ./phtos` says the folder is missing.
    """

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            first = args[0]
            separators = [s for s in (os.sep, os.altsep) if s]
            if os.path.lexists(first) or any(s in first for s in separators):
                args = ["open", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="nsfw-tui",
    cls=DefaultToOpen,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"nsfw-tui {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Score, review and curate images for NSFW content; fine-tune on your own labels."""


# A person's path through the tool: look at a folder, score it in batch or as files land,
# label, choose and train models, then ship one. Groups added without a name keep their
# commands at the top level; `models` names itself and stays a group.
for group in (review, scan, scale, dupes, watch, labels, models, train, evaluate, export, serve):
    app.add_typer(group.app)


def main() -> None:
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()
