"""The `models` group: list models, choose the active one, set a threshold, add an ONNX file."""

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
    open_store,
    print_table,
)

app = typer.Typer(
    name="models", cls=CommandGroup, help="List models, choose the active one, set thresholds."
)


@app.callback(invoke_without_command=True)
@handles_errors
def models_list(ctx: typer.Context, home: HomeOption = None) -> None:
    """List models; the active one is marked with *."""
    if ctx.invoked_subcommand is not None:
        return
    from ..core.thresholds import format_threshold

    _, store = open_store(home)
    with store:
        rows = [
            (
                "*" if m.active else "",
                m.id,
                m.kind,
                format_threshold(m.threshold),
                ", ".join(
                    f"{k}={format_threshold(v) if k == 'threshold' else f'{v:.3f}'}"
                    for k, v in m.metrics.items()
                    if is_num(v)
                ),
                m.path or "(bundled)",
            )
            for m in store.models()
        ]
    columns = ("active", "id", "kind", "threshold", "metrics", "path")
    print_table(columns, rows, whole=("active", "id", "threshold"))


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


@app.command("threshold", cls=Command)
@handles_errors
def models_threshold(
    model_id: Annotated[
        str, typer.Argument(metavar="ID", help="Model id, as listed by `nsfw-tui models`.")
    ],
    value: Annotated[
        float | None,
        typer.Argument(
            metavar="[THRESHOLD]", help="The new threshold, within [0, 1].", show_default=False
        ),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Back to the threshold the model came with."),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Set MODEL_ID's decision threshold by hand, or --reset it to the one it came with."""
    from ..core.active_model import change_line
    from ..core.errors import NsfwTuiError
    from ..core.thresholds import format_threshold, registered_threshold

    if value is not None and reset:
        raise NsfwTuiError("give a threshold or --reset, not both")
    if value is None and not reset:
        raise NsfwTuiError(f"give a threshold within [0, 1], or --reset: e.g. {model_id} 0.3")
    if value is not None and not 0.0 <= value <= 1.0:
        raise NsfwTuiError(f"the threshold must be within [0, 1], got {value:g}")
    _, store = open_store(home)
    with store:
        row = store.model(model_id)
        if row is None:
            known = ", ".join(m.id for m in store.models()) or "none"
            raise NsfwTuiError(f"no model with id {model_id!r} (known: {known})")
        new = value
        if reset:
            new = registered_threshold(store, row)
            if new is None:
                raise NsfwTuiError(
                    f"{model_id} does not record the threshold it came with; "
                    f"set one: nsfw-tui models threshold {model_id} VALUE"
                )
        assert new is not None
        before = store.active_model()
        store.set_threshold(model_id, new)
        after = store.active_model()
    how = " (the threshold it came with)" if reset else ""
    old, now = format_threshold(row.threshold), format_threshold(new)
    console.print(Text(f"{model_id}: threshold {old} -> {now}{how}"))
    if after is not None and after.id == model_id:
        console.print(Text(change_line(before, after)))


@app.command("add", cls=Command)
@handles_errors
def models_add(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="An ONNX classifier, e.g. one `export` wrote; or models:/NAME/VERSION (MLflow).",
        ),
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
    link: Annotated[
        bool,
        typer.Option(
            "--link", help="Use the file where it is instead of copying it into the home."
        ),
    ] = False,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="With models:/...: the MLflow tracking URI (default: config)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Copy an ONNX file into the home and register it; preprocessing from its metadata."""
    from ..core.errors import NsfwTuiError
    from ..core.thresholds import format_threshold
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
    if str(file).startswith("models:/"):
        file_only = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
        file_only += ["--output"] * (output is not None) + ["--link"] * link
        if file_only:  # a registered model describes itself; its file lives in the home
            raise NsfwTuiError(f"{', '.join(file_only)}: only for an ONNX file, not models:/...")
        _add_registered(str(file), model_id, threshold, tracking_uri, home)
        return
    if tracking_uri is not None:
        raise NsfwTuiError("--tracking-uri goes with a models:/NAME/VERSION argument")

    given = {key: value for key, value in flags.items() if value is not None}
    h, store = open_store(home)
    with store:
        added = add_onnx_file(
            store,
            file,
            model_id=model_id,
            threshold=threshold,
            output=output,
            preprocessing=given,
            copy_into=None if link else h.models_dir,
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
            f"{format_threshold(added.threshold)}, input {h}x{w} {pre.layout} {pre.channel_order}; "
            f"preprocessing from {source}"
        )
    )
    mid = added.model_id
    if not link:
        console.print(Text(f"copied from {file.resolve()}; the original may be moved or deleted"))
    console.print(Text(f"use it with --model {mid}, or make it active: nsfw-tui models use {mid}"))


def _add_registered(uri: str, model_id, threshold, tracking_uri: str | None, home) -> None:
    """A version from an MLflow Model Registry, copied into the home as an onnx model."""
    from ..core.config import load_config
    from ..core.thresholds import format_threshold
    from ..models.mlflow_registry import fetch, import_mlflow, parse_uri, quiet_mlflow

    parse_uri(uri)
    import_mlflow("models add models:/...")
    quiet_mlflow()
    if tracking_uri is None:
        tracking_uri = str(load_config(None, []).logging.mlflow.tracking_uri)
    h, store = open_store(home)
    with store:
        got = fetch(
            store,
            uri,
            tracking_uri=tracking_uri,
            copy_into=h.models_dir,
            model_id=model_id,
            threshold=threshold,
        )
    added = got.added
    h_, w = added.preprocessing.input_size
    console.print(
        Text(
            f"registered {added.model_id} from models:/{got.name}/{got.version}: {added.path}, "
            f"output {added.output}, threshold {format_threshold(added.threshold)}, input "
            f"{h_}x{w}; preprocessing from the file's metadata"
        )
    )
    mid = added.model_id
    console.print(Text(f"use it with --model {mid}, or make it active: nsfw-tui models use {mid}"))
