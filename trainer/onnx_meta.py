"""The description every exported ONNX file carries in its metadata_props."""

from __future__ import annotations

import json
from typing import Any

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
