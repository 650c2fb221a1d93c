"""Export and model-file commands: `export --onnx` and `models add FILE.onnx`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from .cli import (
    HomeOption,
    Overrides,
    _open_store,
    app,
    console,
    err_console,
    handles_errors,
    models_app,
)
from .core.errors import NsfwTuiError

Size = Annotated[
    tuple[int, int] | None,
    typer.Option("--input-size", metavar="H W", help="Input height and width in pixels."),
]


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@app.command()
@handles_errors
def export(
    overrides: Overrides = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (the only format).")] = False,
    model: Annotated[
        str | None, typer.Option(help="Checkpoint model id (default: the active model).")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="A checkpoint folder or its model.json instead of --model.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="FILE.onnx (default: model.onnx by the checkpoint)."),
    ] = None,
    opset: Annotated[
        int | None,
        typer.Option(help="ONNX opset for both exporters (default: 18 dynamo, 17 fallback)."),
    ] = None,
    static_batch: Annotated[
        bool, typer.Option("--static-batch", help="Fix the batch size at 1 (default: dynamic).")
    ] = False,
    input_size: Size = None,
    quantize: Annotated[
        bool,
        typer.Option("--quantize", help="Also write an int8 copy (static QDQ, calibrated)."),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Export a trained model to a self-describing ONNX file, checked against PyTorch."""
    from trainer.export import DYNAMO_OPSET, export_onnx
    from trainer.parity import PARITY_ATOL
    from trainer.quantize import quantize_onnx

    from .core.config import load_config

    if not onnx:
        raise NsfwTuiError("choose the format: nsfw-tui export --onnx (the only one so far)")
    if model is not None and checkpoint is not None:
        raise NsfwTuiError("give --model or --checkpoint, not both")
    cfg = load_config(None, overrides or [], section="export").export
    if opset is None and int(cfg.opset) != DYNAMO_OPSET:
        opset = int(cfg.opset)  # a config opset other than the default applies to both
    output = output or (Path(cfg.output) if cfg.output else None)
    size = input_size or (tuple(cfg.input_size) if cfg.input_size else None)
    if size is not None and min(size) < 1:
        raise NsfwTuiError(f"--input-size must be two positive integers, got {list(size)}")

    def say(message: str) -> None:
        err_console.print(Text(message, style="yellow"))

    _, store = _open_store(home)
    with store:
        if checkpoint is None and _export_adapted(store, model, output):
            return
        err_console.print("Exporting and checking against PyTorch…")
        report = export_onnx(
            store,
            model_id=model,
            checkpoint=checkpoint,
            output=output,
            opset=opset,
            dynamic_batch=not static_batch and bool(cfg.dynamic_batch),
            input_size=size,
            say=say,
        )
        p = report.parity
        h, w = report.preprocessing.input_size
        batch = "dynamic batch" if report.dynamic_batch else "batch 1"
        console.print(
            Text(
                f"exported {report.source_id} with the {report.exporter} exporter (opset "
                f"{report.opset}, {h}x{w}, {batch}) to {report.path} ({_mb(report.size_bytes)})"
            )
        )
        if report.fallback:
            console.print(Text(f"fell back from: {report.fallback}", style="yellow"))
        images = (
            f" and {p.image_max_diff:.2g} on {p.image_n} {p.image_source} images"
            if p.image_max_diff is not None
            else " (no labelled image could be read for a check on real images)"
        )
        console.print(
            Text(
                f"checked: onnx.checker full check passed; onnxruntime vs PyTorch max abs diff "
                f"{p.random_max_diff:.2g} on {p.random_n} random inputs{images} (limit "
                f"{PARITY_ATOL:g}); {p.flips} label flips at threshold {report.threshold:.4g}"
                + (
                    f" ({p.near_threshold} image(s) scored within {PARITY_ATOL:g} of it, a tie "
                    "at float32 precision)"
                    if p.near_threshold
                    else ""
                )
            )
        )
        console.print(
            Text(f"registered as {report.model_id}; use it with --model {report.model_id}")
        )
        if quantize or bool(cfg.quantize):
            err_console.print("Quantizing to int8 (static QDQ, calibrated on real images)…")
            q = quantize_onnx(store, report)
            auc = (
                f"AUROC {q.auroc_float:.4f} -> {q.auroc_int8:.4f}"
                if q.auroc_change is not None
                else "AUROC n/a (one class only)"
            )
            console.print(
                Text(
                    f"int8: {q.path} ({_mb(q.size_bytes)}, {report.size_bytes / q.size_bytes:.1f}x "
                    f"smaller); {q.int8_ips:.1f} vs {q.float_ips:.1f} img/s at batch {q.batch} "
                    f"({q.speedup:.2f}x); on {q.n_images} {p.image_source} images max probability "
                    f"change {q.max_prob_change:.4f}, {auc}"
                )
            )
            console.print(Text(f"registered as {q.model_id}; use it with --model {q.model_id}"))


@models_app.command("add")
@handles_errors
def models_add(
    file: Annotated[Path, typer.Argument(help="An ONNX classifier, e.g. one `export` wrote.")],
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
    input_size: Size = None,
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
    from nsfw_tui.models.onnx_import import add_onnx_file

    given = {
        key: value
        for key, value in {
            "input_size": input_size,
            "layout": layout and layout.upper(),
            "channel_order": channel_order and channel_order.upper(),
            "scale": scale,
            "mean": mean,
            "std": std,
            "resize_mode": resize_mode,
            "crop": crop,
        }.items()
        if value is not None
    }
    _, store = _open_store(home)
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


def _export_adapted(store, model: str | None, output: Path | None) -> bool:
    """An adapted model exports as one graph: the built-in network with its head joined on."""
    from nsfw_tui.models.adapted_onnx import export_adapted
    from nsfw_tui.models.registry import resolve_model

    row = resolve_model(store, model)
    if row.kind != "adapted":
        return False
    out = output or Path(row.path).with_suffix(".onnx")
    if out.suffix.lower() != ".onnx":
        raise NsfwTuiError(f"-o must end in .onnx, got {out.name}")
    err_console.print("Exporting the built-in network with the adapted head joined on…")
    path = export_adapted(row, out)
    console.print(
        Text(
            f"exported {row.id} to {path}: checked with onnx.checker and against the in-app "
            "scores (limit 2e-3)"
        )
    )
    return True
