"""int8 copies of an exported ONNX file: onnxruntime static quantization behind an accuracy gate."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_tui.core.atomic import atomic_path
from nsfw_tui.core.errors import one_line
from nsfw_tui.core.metrics import auroc
from nsfw_tui.core.store import Store
from nsfw_tui.models.onnx_files import INPUT_NAME, cpu_session, write_model

from .errors import ExportError
from .export import ExportReport, Source, register_onnx
from .parity import input_batches, probabilities, real_images

# The gate: the int8 copy is kept only this close to the float model on real images.
INT8_MAX_PROB_CHANGE = 0.05
INT8_MAX_AUROC_CHANGE = 0.01
# Where int8 pays: weights of convolutions and matrix products, per output channel. With
# every op quantized (LayerNorm, GELU, Add...) ConvNext-Tiny ran slower than float; uint8
# activations with int8 weights (U8S8) use the VNNI/AVX2 kernels: 3.9x against 1.7x for S8S8
# on ConvNext-Tiny 200x200 batch 32 here. The accuracy gate above still decides.
QUANT_OPS = ("Conv", "MatMul", "Gemm")
QUANTIZATION = "int8 static QDQ, uint8 activations, per-channel int8 Conv/MatMul/Gemm weights"
# Calibration reads the labelled images (the training images among them), not only the 20-odd
# validation images of a small run: ranges taken from those alone clipped an unseen image's
# activations (a probability moved by 0.07 while the validation images moved by 0.003).
MAX_CALIBRATION = 256  # min/max ranges settle long before; each image costs a full pass


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
    n_calibration: int = 0

    @property
    def speedup(self) -> float:
        return self.int8_ips / self.float_ips if self.float_ips else float("nan")

    @property
    def auroc_change(self) -> float | None:
        if self.auroc_float is None or self.auroc_int8 is None:
            return None
        return abs(self.auroc_int8 - self.auroc_float)


def quantize_onnx(store: Store, report: ExportReport, *, register: bool = True) -> Int8Report:
    """An int8 copy of ``report.path`` by onnxruntime static QDQ quantization.

    Calibrated on up to MAX_CALIBRATION labelled images (else the run's validation images);
    kept and registered as ``<id>-onnx-int8`` only when its probabilities on the validation
    and calibration images move by at most INT8_MAX_PROB_CHANGE and its AUROC on the
    validation images by at most INT8_MAX_AUROC_CHANGE.
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
    calibration, _, found = real_images(store, None, report.preprocessing, MAX_CALIBRATION)
    if found == "none":
        calibration = images[:MAX_CALIBRATION]

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {INPUT_NAME: batch}

        def rewind(self) -> None:
            self._it = input_batches(calibration, step, report.preprocessing)

    dest = report.path.with_name(report.path.stem + ".int8.onnx")
    tag = uuid.uuid4().hex[:8]
    prepared = dest.with_name(f".{dest.name}.prep-{tag}")
    try:
        with atomic_path(dest) as tmp:  # dest is replaced only once the checks pass
            try:  # shape inference and graph fusions first, as onnxruntime recommends
                quant_pre_process(os.fspath(report.path), os.fspath(prepared))
                source = prepared
            except Exception:
                source = report.path
            with warnings.catch_warnings(), _quiet_logging():
                warnings.simplefilter("ignore")
                quantize_static(
                    os.fspath(source),
                    os.fspath(tmp),
                    Calibration(),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANT_OPS),
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
            proto = onnx.load(os.fspath(tmp))
            if not has_quantized_ops(proto):
                raise ExportError("onnxruntime quantized no operator of this model")
            write_model(proto, tmp, {**report.props, "quantization": QUANTIZATION})
            onnx.checker.check_model(os.fspath(tmp), full_check=True)
            out = _int8_report(tmp, report, images, labels, dest, calibration)
            problems = []
            if out.max_prob_change > INT8_MAX_PROB_CHANGE:
                problems.append(
                    f"probabilities moved by up to {out.max_prob_change:.4f} "
                    f"(limit {INT8_MAX_PROB_CHANGE:g})"
                )
            if (out.auroc_change or 0.0) > INT8_MAX_AUROC_CHANGE:
                problems.append(
                    f"AUROC moved from {out.auroc_float:.4f} to {out.auroc_int8:.4f} "
                    f"(limit {INT8_MAX_AUROC_CHANGE:g})"
                )
            if problems:
                raise ExportError(
                    f"the int8 copy is too far from the float model on {out.n_images} "
                    f"{report.parity.image_source} and {out.n_calibration} calibration images: "
                    f"{'; '.join(problems)}; it was not kept"
                )
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"int8 quantization failed: {one_line(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            prepared.unlink()
    out.size_bytes = dest.stat().st_size
    if register and report.model_id:
        out.model_id = f"{report.model_id}-int8"
        src = Source(report.checkpoint, report.source_id, report.threshold, report.metrics)
        register_onnx(
            store,
            out.model_id,
            dest,
            src,
            report.preprocessing,
            {
                "output": "probability",
                "source_model": report.source_id,
                "float_model": report.model_id,
                "quantization": QUANTIZATION,
                "max_probability_change": out.max_prob_change,
                "auroc_float": out.auroc_float,
                "auroc_int8": out.auroc_int8,
                "speedup": out.speedup,
            },
        )
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
    int8_path: Path,
    report: ExportReport,
    images: np.ndarray,
    labels: np.ndarray,
    dest: Path,
    calibration: np.ndarray,
) -> Int8Report:
    fp, q = cpu_session(report.path), cpu_session(int8_path)
    dyn = report.dynamic_batch
    pre = report.preprocessing

    def scores(session: Any, pixels: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [probabilities(session, x, dyn) for x in input_batches(pixels, 32, pre)]
        )

    p_float, p_int8 = scores(fp, images), scores(q, images)
    c_change = np.abs(scores(q, calibration) - scores(fp, calibration))
    batch = pre.tensor(images[:32])
    return Int8Report(
        path=dest.resolve(),
        model_id=None,
        n_images=len(images),
        max_prob_change=float(max(np.max(np.abs(p_int8 - p_float)), c_change.max(initial=0.0))),
        auroc_float=auroc(labels.tolist(), p_float.tolist()),
        auroc_int8=auroc(labels.tolist(), p_int8.tolist()),
        float_ips=throughput(fp, batch, dyn),
        int8_ips=throughput(q, batch, dyn),
        batch=len(batch),
        size_bytes=int8_path.stat().st_size,
        n_calibration=len(calibration),
    )


def throughput(session: Any, x: np.ndarray, dynamic: bool = True, seconds: float = 0.5) -> float:
    """Images per second of ``session`` on ``x`` (one warm-up run, then about ``seconds``)."""
    probabilities(session, x, dynamic)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 2:
        probabilities(session, x, dynamic)
        n += 1
    return n * len(x) / elapsed
