"""ONNX files this app writes and reads: the description in their metadata_props, a CPU session."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nsfw_tui.core.errors import NsfwTuiError, one_line
from nsfw_tui.core.preprocess import Preprocessing

FORMAT = "nsfw-tui-onnx"
INPUT_NAME, OUTPUT_NAME = "image", "probability"
LABELS = {"0": "sfw", "1": "nsfw"}


def describe(
    model_id: str, pre: Preprocessing, threshold: float, metrics: dict[str, Any], **extra: str
) -> dict[str, str]:
    """Enough to score with the file anywhere: input, preprocessing, threshold, labels."""
    return {
        "format": FORMAT,
        "model_id": model_id,
        "output": OUTPUT_NAME,
        "input_name": INPUT_NAME,
        "input_size": json.dumps(list(pre.input_size)),
        "layout": pre.layout,
        "channel_order": pre.channel_order,
        "scale": repr(pre.scale),
        "mean": json.dumps(list(pre.mean)),
        "std": json.dumps(list(pre.std)),
        "preprocessing": json.dumps(pre.to_dict(), sort_keys=True),
        "threshold": repr(float(threshold)),
        "labels": json.dumps(LABELS),
        "metrics": json.dumps(metrics, sort_keys=True, default=str),
        **extra,
    }


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """An ONNX file's metadata_props as a dict (weights are not read)."""
    import onnx

    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise NsfwTuiError(f"{path} is not a readable ONNX file: {one_line(exc)}") from None
    return {p.key: p.value for p in proto.metadata_props}


def write_model(proto: Any, path: Path, props: dict[str, str]) -> None:
    """``proto`` with ``props`` (from describe) as its only metadata, written and synced."""
    import onnx

    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = f"NSFW probability from nsfw-tui model {props.get('model_id', '')}"
    with open(path, "wb") as fh:
        fh.write(proto.SerializeToString())
        fh.flush()
        os.fsync(fh.fileno())


def cpu_session(path: str | os.PathLike) -> Any:
    """An onnxruntime session on the CPU alone: the checks of a file run there."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(
        os.fspath(path), sess_options=opts, providers=["CPUExecutionProvider"]
    )
