"""What runs inside each Ray worker: tar shards opened safely, and the scoring actor.

The actor holds one model session and one decode pool for its whole life. Every file is
decoded by the project's safe loader in a pool process under the per-file time limit, so a
bomb, a hang or a crash kills that process and becomes the file's error row; nothing a file
does fails or retries the Ray task that carries it.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nsfw_tui.core.decision import decide
from nsfw_tui.core.decode_pool import Decoded, DecodePool, Failed
from nsfw_tui.core.images import MAX_FILE_BYTES, decode_image, is_image_name
from nsfw_tui.core.preprocess import Preprocessing
from nsfw_tui.core.scorers import max_over_frames

from .bundle import ModelBundle

# Members of one shard the reader accepts; a shard past it is an error row of its own.
MAX_SHARD_MEMBERS = 100_000


def decode_task(task: tuple[str, bytes], spec: Preprocessing, use_draft: bool, max_frames: int):
    """The pool's decoder: ``task`` is (key, bytes) already read by Ray."""
    key, data = task
    return decode_image(data, key, spec, use_draft=use_draft, max_frames=max_frames)


@dataclass(frozen=True)
class DecodeSettings:
    timeout_s: float = 20.0
    use_draft: bool = True
    max_frames: int = 8
    decoders: int = 1  # decode processes per actor
    decoder: Callable[..., Any] = decode_task  # module-level; tests swap in a faulty one


def task_name(task: tuple[str, bytes]) -> str:
    return task[0]


def expand_shards(batch: dict[str, Any], prefix: str) -> dict[str, Any]:
    """WebDataset ``.tar`` shards as one row per image member, keyed ``SHARD#MEMBER``.

    Read from memory with no extraction: only regular members with an image name count,
    each under the file size limit. A shard that cannot be read at all is one row with
    ``error`` set, and ``shard_total`` tells the driver how many members a shard holds.
    """
    keys: list[str] = []
    datas: list[bytes] = []
    errors: list[str] = []
    shards: list[str] = []
    totals: list[int] = []
    for path, data in zip(batch["path"], batch["bytes"], strict=True):
        shard = prefix + str(path)
        rows: list[tuple[str, bytes, str]] = []
        try:
            with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:") as tar:
                for member in tar:
                    if not member.isreg() or not is_image_name(member.name):
                        continue
                    key = f"{shard}#{member.name}"
                    if member.size > MAX_FILE_BYTES:
                        rows.append((key, b"", "too-large: member over the file size limit"))
                    else:
                        fh = tar.extractfile(member)
                        rows.append((key, fh.read() if fh else b"", ""))
                    if len(rows) > MAX_SHARD_MEMBERS:
                        raise tarfile.TarError(f"more than {MAX_SHARD_MEMBERS} members")
        except (tarfile.TarError, OSError, EOFError) as exc:
            rows = [(shard, b"", f"unreadable: not a readable tar shard ({exc})")]
        for key, member_bytes, error in rows:
            keys.append(key)
            datas.append(member_bytes)
            errors.append(error)
            shards.append(shard)
            totals.append(len(rows))
    return {
        "path": np.array(keys, dtype=object),
        "bytes": np.array(datas, dtype=object),
        "read_error": np.array(errors, dtype=object),
        "shard": np.array(shards, dtype=object),
        "shard_total": np.array(totals, dtype=np.int64),
    }


class ScoreWorker:
    """A Ray Data callable class: a batch of (path, bytes) rows in, one output row each."""

    def __init__(
        self,
        bundle: ModelBundle | list,
        settings: DecodeSettings,
        prefix: str,
        features: bool,
        threshold: float,
    ) -> None:
        if isinstance(bundle, list):  # [an ObjectRef], as the engine sends it
            import ray

            bundle = ray.get(bundle[0])
        self.bundle = bundle
        self.settings = settings
        self.prefix = prefix
        self.features = features and bundle.has_features
        self.threshold = threshold
        self.scorer = bundle.scorer(threads=1)
        self.pool = DecodePool(
            self.scorer.preprocessing,
            workers=settings.decoders,
            timeout_s=settings.timeout_s,
            use_draft=settings.use_draft,
            max_frames=settings.max_frames,
            decoder=settings.decoder,
            name_of=task_name,
        )
        self.pool.start()
        self.node = _node_id()

    def _decode(self, key: str, data: bytes):
        return self.pool.decode_next((key, data))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["path"])
        shard_mode = "shard" in batch
        keys = [str(p) if shard_mode else self.prefix + str(p) for p in batch["path"]]
        read_errors = list(batch["read_error"]) if shard_mode else [""] * n
        results: list[Any] = []
        for key, data, read_error in zip(keys, batch["bytes"], read_errors, strict=True):
            results.append(None if read_error else self._decode(key, bytes(data)))
        decoded = [r for r in results if isinstance(r, Decoded)]
        probs: dict[int, float] = {}
        feats: dict[int, bytes] = {}
        if decoded:
            pixels = np.stack([px for d in decoded for px in d.pixels])
            scored = self.scorer.score(pixels)
            counts = [len(d.pixels) for d in decoded]
            start = 0
            for d, p, c in zip(
                decoded, max_over_frames(scored.probabilities, counts), counts, strict=True
            ):
                probs[id(d)] = p
                if self.features and scored.features is not None:
                    block = scored.features[start : start + c].astype(np.float16)
                    feats[id(d)] = block.tobytes()
                start += c
        out: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for key, res, read_error in zip(keys, results, read_errors, strict=True):
            prob = probs.get(id(res)) if isinstance(res, Decoded) else None
            decision = decide(prob, self.threshold)
            if isinstance(res, Failed):
                kind, error = res.error.kind, f"{res.error.kind}: {res.error.reason}"
            elif read_error:
                kind, error = read_error.split(":", 1)[0], read_error
            else:
                kind, error = None, ""
            out["image_path"].append(key)
            out["probability"].append(prob)
            out["prediction"].append(decision.prediction)
            out["class_name"].append(decision.class_name)
            out["error"].append(error)
            out["error_kind"].append(kind)
            out["sha256"].append(getattr(res, "sha256", None))
            out["size"].append(getattr(res, "size", None))
            ok = isinstance(res, Decoded)
            out["width"].append(res.width if ok else None)
            out["height"].append(res.height if ok else None)
            out["format"].append(res.format if ok else None)
            out["n_frames"].append(res.n_frames if ok else None)
            out["features"].append(feats.get(id(res)))
            out["node"].append(self.node)
        if shard_mode:
            out["shard"] = list(batch["shard"])
            out["shard_total"] = [int(t) for t in batch["shard_total"]]
        else:
            out["shard"] = [""] * n
            out["shard_total"] = [0] * n
        return _columns(out)

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()


COLUMNS = (
    "image_path",
    "probability",
    "prediction",
    "class_name",
    "error",
    "error_kind",
    "sha256",
    "size",
    "width",
    "height",
    "format",
    "n_frames",
    "features",
    "node",
)


def _columns(out: dict[str, list[Any]]) -> Any:
    """A pyarrow table with fixed types, so that parts from every batch concatenate."""
    import pyarrow as pa

    return pa.table({name: pa.array(out[name], type=TYPES[name]) for name in out})


def _types() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "image_path": pa.string(),
        "probability": pa.float64(),
        "prediction": pa.int8(),
        "class_name": pa.string(),
        "error": pa.string(),
        "error_kind": pa.string(),
        "sha256": pa.string(),
        "size": pa.int64(),
        "width": pa.int32(),
        "height": pa.int32(),
        "format": pa.string(),
        "n_frames": pa.int32(),
        "features": pa.binary(),
        "node": pa.string(),
        "shard": pa.string(),
        "shard_total": pa.int64(),
    }


class _Types(dict):
    def __missing__(self, key: str) -> Any:
        self.update(_types())
        return dict.__getitem__(self, key)


TYPES: dict[str, Any] = _Types()


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (a test calling the class directly)
        return os.uname().nodename
