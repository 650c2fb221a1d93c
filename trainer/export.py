"""ONNX export of a trained checkpoint: a self-describing file, kept only if it passes parity."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsfw_tui.core.atomic import atomic_path
from nsfw_tui.core.errors import one_line
from nsfw_tui.core.preprocess import Preprocessing
from nsfw_tui.core.store import Store
from nsfw_tui.models.onnx_files import (
    INPUT_NAME,
    OUTPUT_NAME,
    describe,
    write_model,
)
from nsfw_tui.models.registry import resolve_model

from .checkpoint import load_checkpoint, read_meta
from .errors import ExportError
from .parity import MAX_IMAGES, PARITY_ATOL, Parity, check_file, real_images

DYNAMO_OPSET = 18  # onnxscript's native opset: no version conversion in the way
LEGACY_OPSET = 17  # the TorchScript exporter's best-tested opset (LayerNormalization is 17)
EXPORTABLE = ("checkpoint",)

Say = Callable[[str], None]


@dataclass
class ExportReport:
    """What an export wrote, how it was checked, and the images it was checked on."""

    path: Path
    model_id: str | None  # the registered id, None when not registered
    source_id: str
    checkpoint: str
    exporter: str  # "dynamo" or "torchscript"
    opset: int
    fallback: str | None  # why the dynamo exporter was not used
    parity: Parity
    threshold: float
    preprocessing: Preprocessing
    dynamic_batch: bool
    size_bytes: int
    props: dict[str, str]
    metrics: dict[str, Any]
    images: Any = dataclasses.field(default=None, repr=False)  # (uint8 pixels, labels)


# -- the source model -------------------------------------------------------------------------


@dataclass
class Source:
    """The checkpoint being exported: where it is, its model id, threshold and metrics."""

    checkpoint: str
    model_id: str
    threshold: float
    metrics: dict[str, Any]


def _source(store: Store, model_id: str | None, checkpoint: str | os.PathLike | None) -> Source:
    if checkpoint is not None:
        meta = read_meta(checkpoint)
        mid = str(meta.get("model_id") or Path(checkpoint).resolve().name)
        row = store.model(mid)
        threshold = row.threshold if row is not None else float(meta["threshold"])
        return Source(os.fspath(checkpoint), mid, threshold, dict(meta.get("metrics") or {}))
    row = resolve_model(store, model_id)
    if row.kind not in EXPORTABLE:
        hint = {
            "onnx": " (it is ONNX already)",
            "builtin": " (the built-in network ships as ONNX already)",
            "adapted": " (a head on the built-in network's features, not a PyTorch model)",
        }.get(row.kind, "")
        raise ExportError(
            f"model {row.id!r} is of kind {row.kind}{hint}; only {', '.join(EXPORTABLE)} models "
            "(trained with `nsfw-tui train`) can be exported: pass --model ID of one of them "
            "(see `nsfw-tui models`) or --checkpoint PATH"
        )
    if not row.path:
        raise ExportError(f"model {row.id!r} has no checkpoint path recorded")
    return Source(row.path, row.id, row.threshold, dict(row.metrics))


# -- exporters --------------------------------------------------------------------------------


def _probability_module(model: Any) -> Any:
    import torch

    class Probability(torch.nn.Module):
        """The classifier with its sigmoid inside, so the file's output is P(nsfw), shape (N,)."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.inner(image))

    return Probability(model).eval()


def _export_dynamo(module: Any, example: Any, opset: int, dynamic: bool) -> Any:
    import torch

    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            verbose=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=shapes,
        )
    return program.model_proto


def _export_legacy(module: Any, example: Any, opset: int, dynamic: bool) -> Any:
    import io

    import onnx
    import torch

    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(
            module,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


# -- export, check, register ------------------------------------------------------------------


def export_onnx(
    store: Store,
    *,
    model_id: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    opset: int | None = None,
    dynamic_batch: bool = True,
    input_size: tuple[int, int] | None = None,
    register: bool = True,
    max_images: int = MAX_IMAGES,
    say: Say | None = None,
    on_start: Callable[[], None] | None = None,
) -> ExportReport:
    """Export a checkpoint model (the active one, ``model_id`` or ``checkpoint``) to ONNX.

    The dynamo exporter runs first at ``opset`` (default 18); where it fails, or its graph
    fails a check, the TorchScript exporter runs at ``opset`` (default 17). Each attempt is
    written to a hidden temp file, checked (onnx.checker full check, then onnxruntime
    against PyTorch on random inputs and on real images, max abs diff <= PARITY_ATOL) and
    only then moved into place: an ExportError leaves no file. The result is registered in
    the store as an ``onnx`` model ``<id>-onnx`` unless ``register`` is False.
    ``on_start`` is called once every argument has passed its checks, as the export begins.
    """
    import onnx
    import torch

    say = say or (lambda _: None)
    if opset is not None and not 7 <= opset <= onnx.defs.onnx_opset_version():
        raise ExportError(
            f"--opset must be between 7 and {onnx.defs.onnx_opset_version()} (this onnx), "
            f"got {opset}"
        )
    src = _source(store, model_id, checkpoint)
    model, meta = load_checkpoint(src.checkpoint)
    pre = Preprocessing.from_dict(meta["preprocessing"])
    if input_size is not None and tuple(input_size) != pre.input_size:
        if pre.crop is not None:
            raise ExportError("--input-size: this model's preprocessing crops; export it as is")
        pre = dataclasses.replace(pre, resize=tuple(input_size))
    h, w = pre.input_size
    module = _probability_module(model)
    example = torch.zeros((2 if dynamic_batch else 1, 3, h, w))
    try:
        with torch.inference_mode():
            module(example)
    except RuntimeError as exc:
        raise ExportError(
            f"{meta.get('architecture', 'the model')} cannot take a {h}x{w} input "
            f"(trained at {meta['input_size'][0]}x{meta['input_size'][1]}): {one_line(exc)}"
        ) from None
    dest = (
        Path(output) if output is not None else Path(src.checkpoint).resolve().parent / "model.onnx"
    )
    if dest.suffix.lower() != ".onnx":
        raise ExportError(f"the output file must end in .onnx, got {dest.name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if on_start is not None:
        on_start()
    images, labels, source = real_images(store, meta.get("run_id"), pre, max_images)
    attempts = [
        ("dynamo", opset or DYNAMO_OPSET, _export_dynamo),
        ("torchscript", opset or LEGACY_OPSET, _export_legacy),
    ]
    failures: list[str] = []
    for name, version, exporter in attempts:
        props = metadata_props(src, meta, pre, name, version)
        try:
            with atomic_path(dest) as tmp:  # dest is replaced only once parity holds
                proto = exporter(module, example, version, dynamic_batch)
                # dynamo keeps 18 where it cannot convert down to the opset asked for
                version = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
                props["opset"] = str(version)
                write_model(proto, tmp, props)
                parity = check_file(tmp, module, images, pre, src.threshold, dynamic_batch, source)
                if parity.max_diff > PARITY_ATOL:
                    raise ExportError(
                        f"onnxruntime disagrees with PyTorch: max abs diff "
                        f"{parity.max_diff:.3g} > {PARITY_ATOL:g}"
                    )
        except Exception as exc:
            failures.append(f"{name} exporter (opset {version}): {one_line(exc)}")
            if name == "dynamo":
                say(
                    f"the dynamo exporter failed ({one_line(exc)}); trying the TorchScript "
                    f"exporter at opset {attempts[1][1]}"
                )
            continue
        break
    else:
        raise ExportError("export failed, no file written: " + "; ".join(failures))
    report = ExportReport(
        path=dest.resolve(),
        model_id=None,
        source_id=src.model_id,
        checkpoint=src.checkpoint,
        exporter=name,
        opset=version,
        fallback=failures[0] if failures else None,
        parity=parity,
        threshold=src.threshold,
        preprocessing=pre,
        dynamic_batch=dynamic_batch,
        size_bytes=dest.stat().st_size,
        props=props,
        metrics=src.metrics,
        images=(images, labels),
    )
    if register:
        report.model_id = f"{src.model_id}-onnx"
        register_onnx(
            store,
            report.model_id,
            report.path,
            src,
            pre,
            {
                "output": "probability",
                "source_model": src.model_id,
                "source_checkpoint": src.checkpoint,
                "exporter": name,
                "opset": version,
                "dynamic_batch": dynamic_batch,
                "parity_max_abs_diff": parity.max_diff,
                "run_id": meta.get("run_id"),
                "architecture": meta.get("architecture"),
            },
        )
    return report


def metadata_props(
    src: Source, meta: dict[str, Any], pre: Preprocessing, exporter: str, opset: int
) -> dict[str, str]:
    """The file's own description (ONNX metadata_props): enough to score with it anywhere."""
    import torch

    return describe(
        src.model_id,
        pre,
        src.threshold,
        src.metrics,
        architecture=str(meta.get("architecture", "")),
        run_id=str(meta.get("run_id", "")),
        source_checkpoint=os.path.abspath(src.checkpoint),
        exporter=exporter,
        opset=str(opset),
        torch=torch.__version__,
    )


def register_onnx(
    store: Store, model_id: str, path: Path, src: Source, pre: Preprocessing, meta: dict
) -> None:
    """Record the file at ``path`` as an ``onnx`` model at the source model's threshold."""
    with store.write():
        store.add_model(
            model_id,
            "onnx",
            threshold=src.threshold,
            path=os.fspath(path),
            metrics=src.metrics,
            preprocessing=pre.to_dict(),
            meta=meta,
        )
        store.set_threshold(model_id, src.threshold)  # add_model keeps an old row's threshold
