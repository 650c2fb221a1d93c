"""The `nsfw-tui` command line: a root Typer app and one module per command group."""

from .root import app, main

__all__ = ["app", "main"]
