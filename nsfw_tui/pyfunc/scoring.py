"""Scores the pyfunc's inputs, paths under a root or data URIs, as this project's `serve` does.

Torch-free and MLflow-free: this module, and everything it imports from the project, is copied
into a logged model's code folder, so a server needs neither torch nor an installed nsfw-tui.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from nsfw_tui.core.decision import decide
from nsfw_tui.core.decode_pool import DecodePool
from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.images import Decoded, Failed, Result
from nsfw_tui.core.scorers import Scorer, max_over_frames
from nsfw_tui.serve.decoders import Task, decode_task, task_name
from nsfw_tui.serve.paths import Refused, resolve_under_root

ROOT_ENV = "NSFW_TUI_SERVE_ROOT"
"""The folder paths are read under; without it every path is that item's error."""
# data:[<media type>][;param=value]*;base64,<payload>: only base64 payloads carry images
_DATA_URI = re.compile(r"data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*?);base64,", re.I)


@dataclass(frozen=True)
class Settings:
    """How the pyfunc decodes and decides; from the model's config, as a scan would."""

    threshold: float
    use_draft: bool = True
    max_frames: int = 8
    batch_size: int = 16
    decode_workers: int = 2
    """Decode processes (0: decode in the predicting thread, without isolation)."""
    decode_timeout_s: float = 20.0
    """The decode limit of one request (as `serve`'s): an item not decoded by then is its
    timeout error."""


def decode_data_uri(text: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URI; ImageError for anything else."""
    match = _DATA_URI.match(text)
    if match is None:
        raise ImageError("unreadable", "not a base64 data URI (data:image/...;base64,...)")
    media = match["type"].strip().lower()
    if media and not media.startswith("image/"):
        raise ImageError("unsupported", f"the data URI's media type is {media!r}, not image/*")
    try:
        return base64.b64decode("".join(text[match.end() :].split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("unreadable", "the data URI's payload is not valid base64") from None


def root_from_env() -> str | None:
    """The real path of ``NSFW_TUI_SERVE_ROOT``, or None where it is unset or empty."""
    raw = os.environ.get(ROOT_ENV, "").strip()
    return os.path.realpath(raw) if raw else None


def _task(index: int, item: Any, root: str | None) -> Task | Failed:
    """What the decode pool gets for one input: its bytes, a confined path, or its failure."""
    name = f"inputs[{index}]"
    try:
        if not isinstance(item, str) or not item:
            raise ImageError("unreadable", "an input must be a non-empty string")
        if item[:5].lower() == "data:":
            return ("bytes", name, decode_data_uri(item))
        if root is None:
            raise ImageError(
                "refused",
                f"this model reads no paths: {ROOT_ENV} is not set; send a data URI "
                f"(data:image/...;base64,...) or set {ROOT_ENV}=DIR",
            )
        try:
            real = resolve_under_root(item, root, index)
        except Refused as exc:  # one bad entry costs that entry only, as a missing file does
            raise ImageError("unreadable", exc.detail) from None
        return ("path", name, (real, root))
    except ImageError as exc:
        return Failed(name, exc)


def decode_pool(scorer: Scorer, settings: Settings) -> DecodePool:
    """The project's decode pool over the REST face's decoder: the same limits as `serve`."""
    return DecodePool(
        scorer.preprocessing,
        workers=settings.decode_workers,
        timeout_s=settings.decode_timeout_s,
        use_draft=settings.use_draft,
        max_frames=settings.max_frames,
        decoder=decode_task,
        name_of=task_name,
    )


def _probabilities(results: Sequence[Result], scorer: Scorer, batch: int) -> dict[str, float]:
    """Probability per content hash; duplicates scored once, an image's frames at their max."""
    unique = {r.sha256: r for r in results if isinstance(r, Decoded)}
    if not unique:
        return {}
    frames = [px for d in unique.values() for px in d.pixels]
    parts = [
        scorer.score(np.stack(frames[i : i + batch])).probabilities
        for i in range(0, len(frames), batch)
    ]
    counts = [len(d.pixels) for d in unique.values()]
    return dict(zip(unique, max_over_frames(np.concatenate(parts), counts), strict=True))


def entry(result: Result, probs: dict[str, float], threshold: float) -> dict[str, Any]:
    """One answer in the original project's shape; an unreadable input is an error, never SFW."""
    prob = probs.get(result.sha256) if isinstance(result, Decoded) else None
    decision = decide(prob, threshold)
    out: dict[str, Any] = {
        "probability": None if prob is None else round(float(prob), 6),
        "prediction": decision.prediction,
        "class": decision.class_name or "error",
    }
    if isinstance(result, Failed):
        out["error"] = f"{result.error.kind}: {result.error.reason}"
    return out


def predict(
    inputs: Sequence[Any],
    scorer: Scorer,
    settings: Settings,
    root: str | None,
    pool: DecodePool | None = None,
) -> list[dict[str, Any]]:
    """One entry per input, in order: probability, prediction (1/0), class, and error if any.

    Decoding runs in ``pool`` (worker processes with a time limit, as `serve` decodes), or
    in this thread without one.
    """
    pool = pool or decode_pool(scorer, dataclasses.replace(settings, decode_workers=0))
    tasks = [_task(i, item, root) for i, item in enumerate(inputs)]
    deadline = time.monotonic() + settings.decode_timeout_s

    def decode(task: Task | Failed) -> Result:
        return task if isinstance(task, Failed) else pool.decode(task, deadline)

    with ThreadPoolExecutor(max(1, pool.workers), thread_name_prefix="pyfunc-decode") as run:
        results = list(run.map(decode, tasks))
    probs = _probabilities(results, scorer, settings.batch_size)
    return [entry(r, probs, settings.threshold) for r in results]
