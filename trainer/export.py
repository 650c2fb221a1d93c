"""ONNX export of a trained checkpoint: a self-describing file checked against PyTorch; int8."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_tui.core.errors import NsfwTuiError, one_line
from nsfw_tui.core.images import decode_file
from nsfw_tui.core.metrics import auroc
from nsfw_tui.core.preprocess import Preprocessing
from nsfw_tui.core.store import Store
from nsfw_tui.models.onnx_files import (
    INPUT_NAME,
    OUTPUT_NAME,
    cpu_session,
    describe,
    write_model,
)
from nsfw_tui.models.registry import resolve_model

from .checkpoint import load_checkpoint, read_meta
from .records import run as get_run

DYNAMO_OPSET = 18  # onnxscript's native opset: no version conversion in the way
LEGACY_OPSET = 17  # the TorchScript exporter's best-tested opset (LayerNormalization is 17)
EXPORTABLE = ("checkpoint",)
# Gates. fp32 parity is measured at about 1e-6 (RELIABILITY.md 5.2); 1e-4 leaves room for
# other CPUs and kernels while still catching a wrong op or a missing sigmoid.
PARITY_ATOL = 1e-4
INT8_MAX_PROB_CHANGE = 0.05
INT8_MAX_AUROC_CHANGE = 0.01
RANDOM_BATCHES = (1, 7, 32)
MAX_IMAGES = 1000
# Where int8 pays: weights of convolutions and matrix products, per output channel. With
# every op quantized (LayerNorm, GELU, Add...) ConvNext-Tiny ran slower than float; uint8
# activations with int8 weights (U8S8) use the VNNI/AVX2 kernels: 3.9x against 1.7x for S8S8
# on ConvNext-Tiny 200x200 batch 32 here. The accuracy gate below still decides.
QUANT_OPS = ("Conv", "MatMul", "Gemm")
QUANTIZATION = "int8 static QDQ, uint8 activations, per-channel int8 Conv/MatMul/Gemm weights"
MAX_CALIBRATION = 256  # min/max ranges settle long before; each image costs a full pass

Say = Callable[[str], None]


class ExportError(NsfwTuiError):
    """An export could not be made or did not pass its own checks; no file was kept."""


@dataclass
class Parity:
    random_max_diff: float
    random_n: int
    image_max_diff: float | None
    image_n: int
    image_source: str  # "validation", "labelled" or "none"
    flips: int  # decisions at the threshold that differ between PyTorch and onnxruntime
    # Inputs scored within PARITY_ATOL of the threshold: a tie at fp32 precision, not counted
    # as flips. The training threshold is itself one validation image's score, so one is usual.
    near_threshold: int = 0

    @property
    def max_diff(self) -> float:
        return max(self.random_max_diff, self.image_max_diff or 0.0)


@dataclass
class Int8Report:
    path: Path
    model_id: str | None
    n_images: int
    max_prob_change: float
    auroc_float: float | None
    auroc_int8: float | None
    float_ips: float
    int8_ips: float
    batch: int
    size_bytes: int

    @property
    def speedup(self) -> float:
        return self.int8_ips / self.float_ips if self.float_ips else float("nan")

    @property
    def auroc_change(self) -> float | None:
        if self.auroc_float is None or self.auroc_int8 is None:
            return None
        return abs(self.auroc_int8 - self.auroc_float)


@dataclass
class ExportReport:
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
class _Source:
    checkpoint: str
    model_id: str
    threshold: float
    metrics: dict[str, Any]


def _source(store: Store, model_id: str | None, checkpoint: str | os.PathLike | None) -> _Source:
    if checkpoint is not None:
        meta = read_meta(checkpoint)
        mid = str(meta.get("model_id") or Path(checkpoint).resolve().name)
        row = store.model(mid)
        threshold = row.threshold if row is not None else float(meta["threshold"])
        return _Source(os.fspath(checkpoint), mid, threshold, dict(meta.get("metrics") or {}))
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
    return _Source(row.path, row.id, row.threshold, dict(row.metrics))


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
            module, (example,), dynamo=True, verbose=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=shapes,
        )  # fmt: skip
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
            module, (example,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True,
        )  # fmt: skip
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
) -> ExportReport:
    """Export a checkpoint model (the active one, ``model_id`` or ``checkpoint``) to ONNX.

    The dynamo exporter runs first at ``opset`` (default 18); where it fails, or its graph
    fails a check, the TorchScript exporter runs at ``opset`` (default 17). Each attempt is
    written to a hidden temp file, checked (onnx.checker full check, then onnxruntime
    against PyTorch on random inputs and on real images, max abs diff <= PARITY_ATOL) and
    only then moved into place: an ExportError leaves no file. The result is registered in
    the store as an ``onnx`` model ``<id>-onnx`` unless ``register`` is False.
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
    images, labels, source = real_images(store, meta.get("run_id"), pre, max_images)
    attempts = [
        ("dynamo", opset or DYNAMO_OPSET, _export_dynamo),
        ("torchscript", opset or LEGACY_OPSET, _export_legacy),
    ]
    failures: list[str] = []
    for name, version, exporter in attempts:
        props = metadata_props(src, meta, pre, name, version)
        tmp = dest.with_name(f".{dest.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            proto = exporter(module, example, version, dynamic_batch)
            # the dynamo exporter keeps 18 where it cannot convert down to the opset asked for
            version = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
            props["opset"] = str(version)
            write_model(proto, tmp, props)
            parity = check_file(tmp, module, images, pre, src.threshold, dynamic_batch, source)
            if parity.max_diff > PARITY_ATOL:
                raise ExportError(
                    f"onnxruntime disagrees with PyTorch: max abs diff {parity.max_diff:.3g} "
                    f"> {PARITY_ATOL:g}"
                )
        except Exception as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            failures.append(f"{name} exporter (opset {version}): {one_line(exc)}")
            if name == "dynamo":
                say(f"the dynamo exporter failed ({one_line(exc)}); trying the TorchScript "
                    f"exporter at opset {attempts[1][1]}")  # fmt: skip
            continue
        except BaseException:  # Ctrl+C: still no half-written file
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        try:
            os.replace(tmp, dest)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise ExportError(f"cannot write {dest}: {exc.strerror or exc}") from None
        break
    else:
        raise ExportError("export failed, no file written: " + "; ".join(failures))
    report = ExportReport(
        path=dest.resolve(), model_id=None, source_id=src.model_id, checkpoint=src.checkpoint,
        exporter=name, opset=version, fallback=failures[0] if failures else None, parity=parity,
        threshold=src.threshold, preprocessing=pre, dynamic_batch=dynamic_batch,
        size_bytes=dest.stat().st_size, props=props, metrics=src.metrics,
        images=(images, labels),
    )  # fmt: skip
    if register:
        report.model_id = f"{src.model_id}-onnx"
        _register(store, report.model_id, report.path, src, pre, {
            "output": "probability", "source_model": src.model_id,
            "source_checkpoint": src.checkpoint, "exporter": name, "opset": version,
            "dynamic_batch": dynamic_batch, "parity_max_abs_diff": parity.max_diff,
            "run_id": meta.get("run_id"), "architecture": meta.get("architecture"),
        })  # fmt: skip
    return report


def metadata_props(
    src: _Source, meta: dict[str, Any], pre: Preprocessing, exporter: str, opset: int
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


def _run(session: Any, x: np.ndarray, dynamic: bool) -> np.ndarray:
    name = session.get_inputs()[0].name
    if dynamic:
        return np.asarray(session.run(None, {name: x})[0], dtype=np.float32).reshape(len(x))
    return np.concatenate([_run(session, x[i : i + 1], True) for i in range(len(x))])


def check_file(
    path: Path,
    module: Any,
    pixels: np.ndarray,
    pre: Preprocessing,
    threshold: float,
    dynamic: bool,
    source: str = "validation",
) -> Parity:
    """onnx.checker (full), then onnxruntime against ``module`` on random and real inputs."""
    import onnx
    import torch

    onnx.checker.check_model(os.fspath(path), full_check=True)
    session = cpu_session(path)
    h, w = pre.input_size
    rng = np.random.default_rng(0)
    random = [rng.standard_normal((n, 3, h, w)).astype(np.float32) for n in RANDOM_BATCHES]
    diffs: dict[str, float] = {}
    flips = near = 0
    for kind, batches in (("random", random), ("images", _batches(pixels, 32, pre))):
        worst = 0.0
        for x in batches:
            with torch.inference_mode():
                ref = module(torch.from_numpy(x)).float().numpy().reshape(len(x))
            got = _run(session, x, dynamic)
            worst = max(worst, float(np.max(np.abs(got - ref))))
            tie = np.abs(ref - threshold) <= PARITY_ATOL
            flips += int(np.sum(((got >= threshold) != (ref >= threshold)) & ~tie))
            near += int(np.sum(tie)) if kind == "images" else 0
        diffs[kind] = worst
    return Parity(
        diffs["random"], sum(RANDOM_BATCHES), diffs["images"] if len(pixels) else None,
        len(pixels), source if len(pixels) else "none", flips, near,
    )  # fmt: skip


def _batches(pixels: np.ndarray, n: int, pre: Preprocessing) -> Iterable[np.ndarray]:
    """Model inputs in batches of ``n`` (pixels stay uint8 until then: 4x less memory)."""
    for i in range(0, len(pixels), n):
        yield pre.tensor(pixels[i : i + n])


def real_images(
    store: Store, run_id: str | None, pre: Preprocessing, limit: int = MAX_IMAGES
) -> tuple[np.ndarray, np.ndarray, str]:
    """(N, H, W, 3) uint8 pixels through the serving decoder, their labels, and their source.

    The run's validation images where the run is known and they are still on disk, else
    every labelled image (capped at ``limit``); unreadable files are skipped.
    """
    files = {r["sha256"]: (r["path"], r["label"]) for r in store.labelled_files() if r["path"]}
    record = get_run(store, run_id) if run_id else None
    val = [s for s in (record or {}).get("val_hashes", []) if s in files]
    chosen, source = (val, "validation") if val else (sorted(files), "labelled")
    pixels, labels = [], []
    for sha in chosen:
        if len(pixels) >= limit:
            break
        path, label = files[sha]
        try:
            decoded = decode_file(path, pre, use_draft=True, max_frames=1)
        except Exception:  # ImageError, or a decoder bug: one file must not stop the export
            continue
        pixels.append(decoded.pixels[0])
        labels.append(1 if label == "nsfw" else 0)
    if not pixels:
        h, w = pre.input_size
        return np.zeros((0, h, w, 3), np.uint8), np.zeros(0, np.int64), "none"
    return np.stack(pixels), np.asarray(labels), source


def _register(
    store: Store, model_id: str, path: Path, src: _Source, pre: Preprocessing, meta: dict
) -> None:
    with store.write():
        store.add_model(model_id, "onnx", threshold=src.threshold, path=os.fspath(path),
                        metrics=src.metrics, preprocessing=pre.to_dict(), meta=meta)  # fmt: skip
        store.set_threshold(model_id, src.threshold)  # add_model keeps an old row's threshold


# -- int8 -------------------------------------------------------------------------------------


def quantize_onnx(store: Store, report: ExportReport, *, register: bool = True) -> Int8Report:
    """An int8 copy of ``report.path`` by onnxruntime static QDQ quantization.

    Calibrated on the run's validation images (else the labelled images); kept and
    registered as ``<id>-onnx-int8`` only when its probabilities on those images move by at
    most INT8_MAX_PROB_CHANGE and its AUROC by at most INT8_MAX_AUROC_CHANGE.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images, labels = report.images if report.images is not None else (np.zeros(0), np.zeros(0))
    if not len(images):
        raise ExportError(
            "--quantize calibrates on real images (the run's validation images, else labelled "
            "ones) and none could be read; label some images or export without --quantize"
        )
    # MinMax calibration keeps only each tensor's per-batch min and max, so memory stays small.
    # (Not CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the batches it collected when
    # that limit is reached instead of merging them, then fails with "No data is collected".)
    step = 8 if report.dynamic_batch else 1

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {INPUT_NAME: batch}

        def rewind(self) -> None:
            self._it = _batches(images[:MAX_CALIBRATION], step, report.preprocessing)

    dest = report.path.with_name(report.path.stem + ".int8.onnx")
    tag = uuid.uuid4().hex[:8]
    prepared = dest.with_name(f".{dest.name}.prep-{tag}")
    tmp = dest.with_name(f".{dest.name}.part-{tag}")
    try:
        try:  # shape inference and graph fusions first, as onnxruntime recommends
            quant_pre_process(os.fspath(report.path), os.fspath(prepared))
            source = prepared
        except Exception:
            source = report.path
        with warnings.catch_warnings(), _quiet_logging():
            warnings.simplefilter("ignore")
            quantize_static(
                os.fspath(source), os.fspath(tmp), Calibration(), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANT_OPS), per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            )  # fmt: skip
        proto = onnx.load(os.fspath(tmp))
        if not has_quantized_ops(proto):
            raise ExportError("onnxruntime quantized no operator of this model")
        write_model(proto, tmp, {**report.props, "quantization": QUANTIZATION})
        onnx.checker.check_model(os.fspath(tmp), full_check=True)
        out = _int8_report(tmp, report, images, labels, dest)
        problems = []
        if out.max_prob_change > INT8_MAX_PROB_CHANGE:
            problems.append(f"probabilities moved by up to {out.max_prob_change:.4f} "
                            f"(limit {INT8_MAX_PROB_CHANGE:g})")  # fmt: skip
        if (out.auroc_change or 0.0) > INT8_MAX_AUROC_CHANGE:
            problems.append(f"AUROC moved from {out.auroc_float:.4f} to {out.auroc_int8:.4f} "
                            f"(limit {INT8_MAX_AUROC_CHANGE:g})")  # fmt: skip
        if problems:
            raise ExportError(
                f"the int8 copy is too far from the float model on {out.n_images} "
                f"{report.parity.image_source} images: {'; '.join(problems)}; it was not kept"
            )
        os.replace(tmp, dest)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"int8 quantization failed: {one_line(exc)}") from None
    finally:
        for leftover in (prepared, tmp):
            with contextlib.suppress(OSError):
                leftover.unlink()
    out.size_bytes = dest.stat().st_size
    if register and report.model_id:
        out.model_id = f"{report.model_id}-int8"
        src = _Source(report.checkpoint, report.source_id, report.threshold, report.metrics)
        _register(store, out.model_id, dest, src, report.preprocessing, {
            "output": "probability", "source_model": report.source_id,
            "float_model": report.model_id, "quantization": QUANTIZATION,
            "max_probability_change": out.max_prob_change, "auroc_float": out.auroc_float,
            "auroc_int8": out.auroc_int8, "speedup": out.speedup,
        })  # fmt: skip
    return out


@contextlib.contextmanager
def _quiet_logging() -> Any:
    # the quantizer logs its per-tensor notes on the root logger
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def has_quantized_ops(proto: Any) -> bool:
    ops = {n.op_type for n in proto.graph.node}
    return bool(ops & {"QuantizeLinear", "DequantizeLinear"}) or any(
        op.startswith("QLinear") for op in ops
    )


def _int8_report(
    int8_path: Path, report: ExportReport, images: np.ndarray, labels: np.ndarray, dest: Path
) -> Int8Report:
    fp, q = cpu_session(report.path), cpu_session(int8_path)
    dyn = report.dynamic_batch
    pre = report.preprocessing
    p_float = np.concatenate([_run(fp, x, dyn) for x in _batches(images, 32, pre)])
    p_int8 = np.concatenate([_run(q, x, dyn) for x in _batches(images, 32, pre)])
    batch = pre.tensor(images[:32])
    return Int8Report(
        path=dest.resolve(), model_id=None, n_images=len(images),
        max_prob_change=float(np.max(np.abs(p_int8 - p_float))),
        auroc_float=auroc(labels.tolist(), p_float.tolist()),
        auroc_int8=auroc(labels.tolist(), p_int8.tolist()),
        float_ips=throughput(fp, batch, dyn), int8_ips=throughput(q, batch, dyn),
        batch=len(batch), size_bytes=int8_path.stat().st_size,
    )  # fmt: skip


def throughput(session: Any, x: np.ndarray, dynamic: bool = True, seconds: float = 0.5) -> float:
    """Images per second of ``session`` on ``x`` (one warm-up run, then about ``seconds``)."""
    _run(session, x, dynamic)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 2:
        _run(session, x, dynamic)
        n += 1
    return n * len(x) / elapsed
