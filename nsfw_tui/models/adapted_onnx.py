"""ONNX export of an adapted model: the built-in open_nsfw graph with the head joined on."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_tui.core.adapt import Head, load_head
from nsfw_tui.core.atomic import atomic_path
from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.core.preprocess import OPEN_NSFW
from nsfw_tui.core.scorers import (
    BUILTIN_FEATURES,
    BUILTIN_SHA256,
    AdaptedScorer,
    OnnxScorer,
    builtin_model_path,
    load_builtin,
)
from nsfw_tui.core.store import ModelRow

from .onnx_files import INPUT_NAME, OUTPUT_NAME, describe, write_model

# The same self-description (onnx_files.describe) as the export of a trained model writes.
SOFTMAX_OUTPUT = "outputs"  # the built-in graph's own two-class output, dropped
# The cache holds float16 features and the in-app scores come from them; the graph rounds
# its features the same way, so the file and the app agree to float32 rounding.
PARITY_ATOL = 2e-3
PARITY_IMAGES = 12


def joined_graph(head: Head) -> Any:
    """The built-in ModelProto with ``head`` on its pooled features; output P(nsfw), (N,)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    data = builtin_model_path().read_bytes()
    if hashlib.sha256(data).hexdigest() != BUILTIN_SHA256:
        raise NsfwTuiError("the built-in model file is damaged (checksum mismatch)")
    model = onnx.load_from_string(data)
    graph = model.graph
    old_input = graph.input[0].name
    graph.input[0].name = INPUT_NAME
    for node in graph.node:
        node.input[:] = [INPUT_NAME if name == old_input else name for name in node.input]
    keep = [n for n in graph.node if SOFTMAX_OUTPUT not in n.output]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.output[:]

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    nodes = [
        helper.make_node("Cast", [BUILTIN_FEATURES], ["adapt/f16"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["adapt/f16"], ["adapt/features"], to=TensorProto.FLOAT),
    ]
    h = "adapt/features"
    for i, (w, b) in enumerate(head.layers):
        wi = const(f"adapt/w{i}", np.ascontiguousarray(w, dtype=np.float32))
        bi = const(f"adapt/b{i}", np.ascontiguousarray(b, dtype=np.float32))
        nodes.append(helper.make_node("MatMul", [h, wi], [f"adapt/mm{i}"]))
        nodes.append(helper.make_node("Add", [f"adapt/mm{i}", bi], [f"adapt/z{i}"]))
        h = f"adapt/z{i}"
        if i < len(head.layers) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"adapt/h{i}"]))
            h = f"adapt/h{i}"
    flat = const("adapt/flat", np.array([-1], dtype=np.int64))
    nodes.append(helper.make_node("Sigmoid", [h], ["adapt/p"]))
    nodes.append(helper.make_node("Reshape", ["adapt/p", flat], [OUTPUT_NAME]))
    graph.node.extend(nodes)
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N"]))
    return model


def metadata_props(row: ModelRow, head: Head, opset: int) -> dict[str, str]:
    import onnx

    return describe(
        row.id,
        OPEN_NSFW,
        row.threshold,
        row.metrics,
        architecture=f"open_nsfw + {head.kind} head",
        run_id="",
        source_checkpoint=os.path.abspath(row.path or ""),
        exporter="adapt",
        opset=str(opset),
        onnx=onnx.__version__,
        head=json.dumps({k: head.meta.get(k) for k in ("head", "c", "hidden", "labels")}),
    )


def export_adapted(model_row: ModelRow, out_path: str | os.PathLike) -> Path:
    """Write ``model_row`` (kind ``adapted``) as one ONNX file, checked against the app.

    The file takes the built-in network's input (NHWC, BGR, mean-subtracted 224x224, see
    the ``preprocessing`` metadata) and outputs P(nsfw) per image, shape (N,). It is
    written to a hidden temp file, checked (onnx.checker, then onnxruntime against the
    in-app scorer on images, max abs diff <= PARITY_ATOL) and only then moved into place.
    """
    import onnx

    if model_row.kind != "adapted" or not model_row.path:
        raise NsfwTuiError(f"model {model_row.id!r} is not an adapted model with a head file")
    dest = Path(out_path)
    if dest.suffix.lower() != ".onnx":
        raise NsfwTuiError(f"the output file must end in .onnx, got {dest.name}")
    head = load_head(model_row.path)
    model = joined_graph(head)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:  # replaces dest only once the checks pass
        write_model(model, tmp, metadata_props(model_row, head, opset))
        onnx.checker.check_model(os.fspath(tmp), full_check=True)
        diff = parity(tmp, AdaptedScorer(model_row.id, head, load_builtin(), model_row.threshold))
        if diff > PARITY_ATOL:
            raise NsfwTuiError(
                f"the exported graph disagrees with the app: max abs diff {diff:.3g} > "
                f"{PARITY_ATOL:g}; no file written"
            )
    return dest.resolve()


def parity(path: str | os.PathLike, scorer: AdaptedScorer, n: int = PARITY_IMAGES) -> float:
    """Max |P_file - P_app| on ``n`` smooth random images (skin-toned to photo-like)."""
    exported = OnnxScorer("export", os.fspath(path), OPEN_NSFW, output="probability")
    pixels = sample_pixels(n)
    return float(
        np.max(np.abs(exported.score(pixels).probabilities - scorer.score(pixels).probabilities))
    )


def sample_pixels(n: int, seed: int = 0) -> np.ndarray:
    """(n, 224, 224, 3) uint8 images with smooth shapes, so the scores spread out."""
    rng = np.random.default_rng(seed)
    h, w = OPEN_NSFW.input_size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        img = np.ones((h, w, 3), np.float32) * rng.uniform(40, 220, 3)
        for _ in range(3):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 90)
            a = np.clip(1.2 - ((x - cx) ** 2 + (y - cy) ** 2) / r**2, 0, 1)[..., None]
            img = img * (1 - a) + rng.uniform(60, 240, 3) * a
        out[i] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return out
