"""The `export` command: a model as a self-describing ONNX file, or into an MLflow registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from ..core.thresholds import format_threshold
from .options import (
    HomeOption,
    InputSize,
    console,
    err_console,
    handles_errors,
    open_store,
    overrides_argument,
)

Overrides = overrides_argument("opset=17 dynamic_batch=false")

app = typer.Typer()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@app.command()
@handles_errors
def export(
    overrides: Overrides = None,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Export to a self-describing ONNX file.")
    ] = False,
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow",
            help="Log as an MLflow pyfunc and register it (logging.mlflow.* settings).",
        ),
    ] = False,
    alias: Annotated[
        str | None,
        typer.Option(help="With --mlflow: the alias the new version takes (default: config)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model id (default: the active model); --onnx takes trained ones."),
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
    input_size: InputSize = None,
    quantize: Annotated[
        bool,
        typer.Option("--quantize", help="Also write an int8 copy (static QDQ, calibrated)."),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Export a trained model to ONNX (checked against PyTorch), or any model to MLflow."""
    from trainer.export import DYNAMO_OPSET, export_onnx
    from trainer.parity import PARITY_ATOL
    from trainer.quantize import quantize_onnx

    from ..core.config import load_config

    if onnx == mlflow:
        raise NsfwTuiError("choose one: nsfw-tui export --onnx, or nsfw-tui export --mlflow")
    if model is not None and checkpoint is not None:
        raise NsfwTuiError("give --model or --checkpoint, not both")
    if alias is not None and not mlflow:
        raise NsfwTuiError("--alias goes with --mlflow")
    onnx_only = {
        "-o": output,
        "--opset": opset,
        "--static-batch": static_batch or None,
        "--input-size": input_size,
        "--quantize": quantize or None,
    }
    given = [flag for flag, value in onnx_only.items() if value is not None]
    if mlflow and given:
        verb = "goes" if len(given) == 1 else "go"
        raise NsfwTuiError(f"{', '.join(given)} {verb} with --onnx, not --mlflow")
    full = load_config(None, overrides or [], section="export")
    if mlflow:
        _export_mlflow(full.logging.mlflow, model, checkpoint, alias, home)
        return
    cfg = full.export
    if opset is None and int(cfg.opset) != DYNAMO_OPSET:
        opset = int(cfg.opset)  # a config opset other than the default applies to both
    output = output or (Path(cfg.output) if cfg.output else None)
    size = input_size or (tuple(cfg.input_size) if cfg.input_size else None)
    if size is not None and min(size) < 1:
        raise NsfwTuiError(f"--input-size must be two positive integers, got {list(size)}")

    def say(message: str) -> None:
        err_console.print(Text(message, style="yellow"))

    _, store = open_store(home)
    with store:
        if checkpoint is None and _export_adapted(store, model, output):
            return
        report = export_onnx(
            store,
            model_id=model,
            checkpoint=checkpoint,
            output=output,
            opset=opset,
            dynamic_batch=not static_batch and bool(cfg.dynamic_batch),
            input_size=size,
            say=say,
            # said once the arguments passed their checks, never before a refusal
            on_start=lambda: err_console.print("Exporting and checking against PyTorch…"),
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
                f"{PARITY_ATOL:g}); {p.flips} label flips at threshold "
                f"{format_threshold(report.threshold)}"
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
                    f"({q.speedup:.2f}x); on {q.n_images} {p.image_source} and {q.n_calibration} "
                    f"calibration images max probability change {q.max_prob_change:.4f}, {auc}"
                )
            )
            console.print(Text(f"registered as {q.model_id}; use it with --model {q.model_id}"))


def _export_adapted(store, model: str | None, output: Path | None) -> bool:
    """An adapted model exports as one graph: the built-in network with its head joined on."""
    from ..models.adapted_onnx import export_adapted
    from ..models.registry import resolve_model

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


def _export_mlflow(mlflow_cfg, model: str | None, checkpoint: Path | None, alias, home) -> None:
    """Any model of the store as a registered MLflow pyfunc (its ONNX file inside)."""
    import tempfile

    from ..models.mlflow_registry import (
        check_alias,
        import_mlflow,
        onnx_for,
        publish,
        quiet_mlflow,
    )
    from ..models.registry import resolve_model

    import_mlflow("export --mlflow")  # before any work: one line naming the extra
    quiet_mlflow()
    alias = mlflow_cfg.registered_model_alias if alias is None else (alias or None)
    if alias:
        check_alias(alias)
    _, store = open_store(home)
    with store, tempfile.TemporaryDirectory(prefix="nsfw-tui-export-") as tmp:
        if checkpoint is None:
            row = resolve_model(store, model)
            kind, model_id, metrics = row.kind, row.id, row.metrics
        else:
            kind, model_id, metrics = "checkpoint", None, {}
        if kind == "checkpoint":
            from trainer.export import export_onnx

            err_console.print("Exporting to ONNX and checking against PyTorch…")
            report = export_onnx(
                store,
                model_id=model_id,
                checkpoint=checkpoint,
                output=Path(tmp) / f"{model_id or 'model'}.onnx",
                register=False,
            )
            path, model_id, metrics = report.path, report.source_id, report.metrics
        else:
            err_console.print(f"Writing {model_id} as a self-describing ONNX file…")
            path = onnx_for(row, Path(tmp) / f"{model_id}.onnx")
        published = publish(
            path,
            mlflow_cfg=mlflow_cfg,
            kind=kind,
            metrics=metrics,
            model_id=model_id,
            alias=alias,
            say=lambda text: err_console.print(text),
        )
    tags = published.tags
    console.print(
        Text(
            f"registered {model_id} as {published.uri} (run {published.run_id}) at "
            f"{mlflow_cfg.tracking_uri}; threshold {tags['threshold']}"
            + (f"; alias {published.alias}" if published.alias else "")
        )
    )
    console.print(
        Text(
            f"serve it: MLFLOW_TRACKING_URI={mlflow_cfg.tracking_uri} mlflow models serve "
            f"-m {published.uri} --env-manager local"
        )
    )
