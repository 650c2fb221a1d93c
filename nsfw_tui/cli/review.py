"""The review screen's commands: `open` (also `nsfw-tui PATH`) and `demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    Command,
    HomeOption,
    ThresholdOption,
    check_threshold,
    handles_errors,
    open_store,
)

app = typer.Typer()

Blur = Annotated[
    bool, typer.Option("--blur/--no-blur", help="Safe mode: blur likely-NSFW previews.")
]


def _run_app(
    folder: Path,
    *,
    home: Path | None,
    blur: bool,
    threshold: float | None,
    model: str | None = None,
) -> None:
    from ..models.registry import resolve_model

    h, store = open_store(home)  # checks and migrates before the screen takes over
    with store:
        if model is not None:
            resolve_model(store, model)  # an unknown id is one line here, not a failed screen
    # textual-image asks the terminal what it can draw; it must do so before Textual starts.
    import textual_image.renderable  # noqa: F401

    from ..core.decode_pool import start_resource_tracker

    start_resource_tracker()  # before Textual swaps stderr for a capture object

    from ..tui.app import make_app
    from ..tui.settings import ReviewSettings

    make_app(
        folder, home=h, settings=ReviewSettings(blur=blur, threshold=threshold, model_id=model)
    ).run()


@app.command("open", cls=Command)
@handles_errors
def open_(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Folder of images to review.")],
    blur: Blur = True,
    threshold: ThresholdOption = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model id for this review (default: the active one, left as it is)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Review a folder: `nsfw-tui PATH` opens the full-screen review screen."""
    from ..core.scan import check_folder

    check_threshold(threshold)
    _run_app(check_folder(path), home=home, blur=blur, threshold=threshold, model=model)


@app.command()
@handles_errors
def demo(blur: Blur = True, home: HomeOption = None) -> None:
    """Open generated sample images in a home of its own (HOME/demo); your store stays as it is."""
    from ..core.demo import prepare_demo
    from ..core.home import resolve_home

    demo_home, folder = prepare_demo(resolve_home(home))
    _run_app(folder, home=demo_home.root, blur=blur, threshold=None)
