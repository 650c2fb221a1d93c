"""The root `nsfw-tui` app: joins each command group in the order `--help` lists them."""

from __future__ import annotations

import os

import typer

from . import evaluate, export, labels, models, review, scan, serve, train, watch


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
    rich_markup_mode=None,
)
# A person's path through the tool: look at a folder, score it in batch or as files land,
# label, choose and train models, then ship one. Groups added without a name keep their
# commands at the top level; `models` names itself and stays a group.
for group in (review, scan, watch, labels, models, train, evaluate, export, serve):
    app.add_typer(group.app)


def main() -> None:
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()
