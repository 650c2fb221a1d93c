"""The REST service: parse a request, decode, score and decide."""

# fastapi, starlette, anyio and uvicorn are imported inside functions: spawned decode workers
# import this package for `decode_task`, and the base install has none of them.

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.decision import decide
from ..core.decode_pool import DecodePool
from ..core.errors import ImageError, StoreError
from ..core.images import Decoded, Failed, Result
from ..core.scorers import Scorer, max_over_frames
from .decoders import Task
from .paths import Refused, resolve_under_root

LabelReader = Callable[[list[str]], dict[str, str]]
Item = Task | Failed  # an image to decode, or one already refused (a path outside the root)


@dataclass
class Service:
    scorer: Scorer
    threshold: float
    model_id: str
    root: str | None
    max_images: int
    decoders: DecodePool
    labels: LabelReader | None
    batch_size: int
    decode_timeout_s: float
    queue_timeout_s: float
    gate: asyncio.Semaphore

    def tasks_from_json(self, body: bytes) -> list[Item]:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise Refused(400, f"malformed JSON: {str(exc)[:200]}") from None
        if not isinstance(doc, dict):
            raise Refused(400, "the body must be a JSON object with 'inputs' or 'images'")
        unknown = sorted(set(doc) - {"inputs", "images"})
        if unknown:
            raise Refused(400, f"unknown keys {unknown}; send 'inputs' (paths) or 'images'")
        if not doc:
            raise Refused(400, "send 'inputs' (paths under the root) or 'images' (base64)")
        inputs, images = doc.get("inputs", []), doc.get("images", [])
        for key, value in (("inputs", inputs), ("images", images)):
            if not isinstance(value, list):
                raise Refused(400, f"'{key}' must be a list")
        self.check_count(len(inputs) + len(images))
        tasks: list[Item] = []
        for i, raw in enumerate(inputs):
            try:
                real = resolve_under_root(raw, self.root, i)
            except ImageError as exc:
                tasks.append(Failed(f"inputs[{i}]", exc))
                continue
            tasks.append(("path", f"inputs[{i}]", (real, self.root)))
        for i, text in enumerate(images):
            if not isinstance(text, str) or not text:
                raise Refused(400, f"images[{i}] must be a non-empty base64 string")
            try:
                data = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise Refused(400, f"images[{i}] is not valid base64") from None
            tasks.append(("bytes", f"images[{i}]", data))
        return tasks

    def check_count(self, n: int) -> None:
        if n > self.max_images:
            raise Refused(400, f"{n} images in one request; the limit is {self.max_images}")

    async def predict(self, tasks: Sequence[Item]) -> tuple[int, list[dict]]:
        import anyio

        if not tasks:
            return 200, []
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await self.gate.acquire()
        except TimeoutError:
            raise Refused(
                503, "busy: every scoring slot stayed taken; retry shortly", {"Retry-After": "1"}
            ) from None
        try:
            deadline = time.monotonic() + self.decode_timeout_s
            limiter = anyio.CapacityLimiter(max(1, self.decoders.workers))

            async def decode(t: Item) -> Result:
                if isinstance(t, Failed):
                    return t
                return await anyio.to_thread.run_sync(
                    self.decoders.decode, t, deadline, limiter=limiter
                )

            results: list[Result] = list(await asyncio.gather(*map(decode, tasks)))
            decoded = [r for r in results if isinstance(r, Decoded)]
            probs = await anyio.to_thread.run_sync(self.score, decoded) if decoded else {}
        finally:
            self.gate.release()
        shas = sorted({r.sha256 for r in results if r.sha256})
        labels = await anyio.to_thread.run_sync(self.read_labels, shas) if shas else {}
        items = [self.item(r, probs, labels) for r in results]
        if any(i["prediction"] is not None for i in items):
            return 200, items
        timed_out = any(isinstance(r, Failed) and r.error.kind == "timeout" for r in results)
        return (504 if timed_out else 422), items

    def score(self, decoded: list[Decoded]) -> dict[str, tuple[float, float | None]]:
        """(probability, a video's best frame time) per content hash; duplicates are scored
        once, frames in batches."""
        unique = {d.sha256: d for d in decoded}
        frames = [px for d in unique.values() for px in d.pixels]
        parts = [
            self.scorer.score(np.stack(frames[i : i + self.batch_size])).probabilities
            for i in range(0, len(frames), self.batch_size)
        ]
        counts = [len(d.pixels) for d in unique.values()]
        every = np.concatenate(parts)
        probs = max_over_frames(every, counts)
        out: dict[str, tuple[float, float | None]] = {}
        start = 0
        for (sha, d), p, n in zip(unique.items(), probs, counts, strict=True):
            at = None
            if d.frame_times is not None:
                at = float(d.frame_times[int(np.argmax(every[start : start + n]))])
            out[sha] = (p, at)
            start += n
        return out

    def read_labels(self, shas: list[str]) -> dict[str, str]:
        if self.labels is None:
            return {}
        try:
            return self.labels(shas)
        except StoreError as exc:
            raise Refused(503, f"cannot read labels: {exc}", {"Retry-After": "1"}) from None

    def item(
        self, r: Result, probs: dict[str, tuple[float, float | None]], labels: dict[str, str]
    ) -> dict:
        prob, at = probs.get(r.sha256, (None, None)) if isinstance(r, Decoded) else (None, None)
        label = labels.get(r.sha256) if r.sha256 else None
        decision = decide(prob, self.threshold, label)
        out: dict[str, Any] = {
            "probability": None if prob is None else round(float(prob), 6),
            "prediction": decision.prediction,
            "class": decision.class_name or "error",
        }
        if isinstance(r, Failed):
            out["error"] = f"{r.error.kind}: {r.error.reason}"
        if label is not None:
            out["label"] = label
        if at is not None:
            out["frame_time"] = round(at, 3)
        return out


def store_labels(store_path: str | os.PathLike) -> LabelReader:
    """Current labels by content hash; each call opens its own connection (thread-bound)."""

    def read(shas: list[str]) -> dict[str, str]:
        from ..core.store import Store

        with Store.open(store_path, check=False) as store:
            return {sha: ev.label for sha, ev in store.current_labels(shas).items()}

    return read
