"""The `models` group: list models, choose the active one, add an ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from .options import (
    Command,
    CommandGroup,
    HomeOption,
    InputSize,
    console,
    handles_errors,
    is_num,
    new_table,
    open_store,
)

app = typer.Typer(name="models", cls=CommandGroup, help="List models and choose the active one.")


@app.callback(invoke_without_command=True)
@handles_errors
def models_list(ctx: typer.Context, home: HomeOption = None) -> None:
    """List models; the active one is marked with *."""
    if ctx.invoked_subcommand is not None:
        return
    _, store = open_store(home)
    with store:
        table = new_table("", "id", "kind", "threshold", "metrics", "path")
        for m in store.models():
            metrics = ", ".join(f"{k}={v:.3f}" for k, v in m.metrics.items() if is_num(v))
            table.add_row(
                "*" if m.active else "",
                Text(m.id),
                m.kind,
                f"{m.threshold:g}",
                Text(metrics),
                Text(m.path or "(bundled)"),
            )
        console.print(table)


@app.command("use", cls=Command)
@handles_errors
def models_use(
    model_id: Annotated[
        str, typer.Argument(metavar="MODEL_ID", help="Model id, as listed by `nsfw-tui models`.")
    ],
    home: HomeOption = None,
) -> None:
    """Make MODEL_ID the active model."""
    from ..core.active_model import change_line

    _, store = open_store(home)
    with store:
        before = store.active_model()
        store.set_active(model_id)
        console.print(Text(change_line(before, store.active_model())))


@app.command("add", cls=Command)
@handles_errors
def models_add(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="An ONNX classifier, e.g. one `export` wrote.")
    ],
    model_id: Annotated[
        str | None,
        typer.Option("--id", help="Model id (default: as export named it, else the file name)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Decision threshold (default: the file's, else 0.5).")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(help="How to read the first output: softmax2, probability or logit."),
    ] = None,
    input_size: InputSize = None,
    layout: Annotated[str | None, typer.Option(help="NCHW (default) or NHWC.")] = None,
    channel_order: Annotated[str | None, typer.Option(help="RGB (default) or BGR.")] = None,
    scale: Annotated[
        float | None, typer.Option(help="Multiplier on 0..255 values (default 1/255).")
    ] = None,
    mean: Annotated[
        tuple[float, float, float] | None,
        typer.Option(metavar="R G B", help="Per-channel mean, in scaled units."),
    ] = None,
    std: Annotated[
        tuple[float, float, float] | None,
        typer.Option(metavar="R G B", help="Per-channel std, in scaled units."),
    ] = None,
    resize_mode: Annotated[
        str | None, typer.Option(help="stretch (default) or shorter (then --crop).")
    ] = None,
    crop: Annotated[
        tuple[int, int] | None, typer.Option(metavar="H W", help="Centre crop after resizing.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Register an ONNX file as a model; preprocessing from its metadata, else from flags."""
    from ..models.onnx_import import add_onnx_file

    flags = dict(
        input_size=input_size,
        layout=layout and layout.upper(),
        channel_order=channel_order and channel_order.upper(),
        scale=scale,
        mean=mean,
        std=std,
        resize_mode=resize_mode,
        crop=crop,
    )
    given = {key: value for key, value in flags.items() if value is not None}
    _, store = open_store(home)
    with store:
        added = add_onnx_file(
            store, file, model_id=model_id, threshold=threshold, output=output, preprocessing=given
        )
    pre = added.preprocessing
    h, w = pre.input_size
    source = (
        f"the file's metadata ({', '.join(added.from_metadata)})"
        if added.from_metadata
        else "the command line"
    )
    console.print(
        Text(
            f"registered {added.model_id}: {added.path}, output {added.output}, threshold "
            f"{added.threshold:g}, input {h}x{w} {pre.layout} {pre.channel_order}; "
            f"preprocessing from {source}"
        )
    )
    mid = added.model_id
    console.print(Text(f"use it with --model {mid}, or make it active: nsfw-tui models use {mid}"))
