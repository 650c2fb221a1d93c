"""Checkpoints as safetensors weights plus a JSON sidecar, and the PyTorch scorer reading them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.core.preprocess import Preprocessing
from nsfw_tui.core.scorers import ScoreBatch

from .errors import CheckpointError

FORMAT = "nsfw-tui-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"


def save_checkpoint(directory: Path, model: Any, meta: dict[str, Any]) -> Path:
    """Write ``directory``/model.safetensors and model.json at once; returns the JSON path.

    Both files are written and fsynced in a hidden sibling folder that is then renamed into
    place, so a kill or a full disk leaves either the whole checkpoint or nothing.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    if directory.exists():
        raise CheckpointError(f"cannot save the checkpoint: {directory} already exists")
    tmp = directory.with_name(f".{directory.name}.part-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        weights = tmp / WEIGHTS_NAME
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(weights))
        _fsync(weights)
        data = weights.read_bytes()
        kind = getattr(model, "pool_kind", None)
        if kind is not None and isinstance(meta.get("model"), Mapping):
            # what the model pools by, whatever the caller's copy of its config left out:
            # a sidecar without it reads as one written before model.pool_kind (average)
            meta = {**meta, "model": {**meta["model"], "pool_kind": kind}}
        full = {
            **meta,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            # the checksum is what turns a truncated or bit-flipped file into a clear error
            "weights": {"file": WEIGHTS_NAME, "sha256": _sha256(data), "bytes": len(data)},
        }
        sidecar = tmp / META_NAME
        sidecar.write_text(json.dumps(full, indent=2, sort_keys=True), encoding="utf-8")
        _fsync(sidecar)
        os.replace(tmp, directory)
        _fsync(directory.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "the disk is full" if exc.errno == 28 else (exc.strerror or str(exc))
        raise CheckpointError(f"cannot save the checkpoint to {directory}: {why}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory / META_NAME


def _fsync(path: Path) -> None:
    # a directory fsync makes the rename durable; some file systems refuse it, which is fine
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(metadata JSON, checkpoint folder) for a folder, its JSON or its weights file."""
    p = Path(path)
    if p.is_dir():
        return p / META_NAME, p
    if p.suffix == ".safetensors":
        return p.with_name(META_NAME), p.parent
    return p, p.parent


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's JSON metadata, checked for format; CheckpointError otherwise."""
    meta_path, _ = _paths(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint metadata {meta_path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint metadata {meta_path} is damaged or truncated ({exc})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not an nsfw-tui checkpoint")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path} was written by a newer nsfw-tui (checkpoint format "
            f"{meta['format_version']}); upgrade nsfw-tui to load it"
        )
    return meta


def load_checkpoint(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """The model (eval mode, CPU) and metadata of a checkpoint; never unpickles anything.

    ``path`` is the checkpoint folder, its model.json or its model.safetensors. Any damage
    (missing file, truncation, flipped bytes, tensors that do not fit) is a CheckpointError.
    """
    from safetensors.torch import load as load_tensors

    from .models import BASELINE, build_model

    meta = read_meta(path)
    meta_path, folder = _paths(path)
    info = meta.get("weights") or {}
    weights_path = folder / str(info.get("file", WEIGHTS_NAME))
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint weights {weights_path} are missing") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {weights_path}: {exc.strerror or exc}") from None
    if info.get("sha256") and _sha256(data) != info["sha256"]:
        cut = f" ({len(data)} of {info['bytes']} bytes)" if info.get("bytes") != len(data) else ""
        raise CheckpointError(
            f"checkpoint weights {weights_path} are damaged or truncated{cut}: "
            "their checksum does not match; retrain, or restore the file"
        )
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # SafetensorError and friends
        raise CheckpointError(f"checkpoint weights {weights_path} cannot be read: {exc}") from None
    try:
        model_cfg = {**meta["model"], "pretrained": False, "weights": None}  # never download
        if model_cfg.get("name") == BASELINE and "pool" not in model_cfg:
            # written before the baseline pooled its features: it flattened the whole map
            model_cfg["pool"] = 0
        if model_cfg.get("name") == BASELINE and "pool_kind" not in model_cfg:
            # written before model.pool_kind existed: a pooled head averaged its grid
            model_cfg["pool_kind"] = "avg"
        model = build_model(model_cfg, tuple(meta["input_size"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{meta_path} does not describe a model: {exc}") from None
    except NsfwTuiError as exc:
        raise CheckpointError(
            f"{meta_path} names a model this version cannot build: {exc}"
        ) from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = "; ".join(lines[1:3]) or lines[0]
        raise CheckpointError(
            f"checkpoint weights {weights_path} do not fit the {meta['model'].get('name')} "
            f"architecture: {detail[:300]}"
        ) from None
    model.eval()
    return model, meta


class CheckpointScorer:
    """Scores with a trained checkpoint in PyTorch: eval mode, sigmoid of the logit."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        model_id: str | None = None,
        threshold: float | None = None,
        device: str | None = None,
    ) -> None:
        import torch

        model, meta = load_checkpoint(path)
        self.meta = meta
        self.id = model_id or str(meta.get("model_id") or Path(path).stem)
        try:
            self.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} has no usable preprocessing: {exc}") from None
        self.default_threshold = float(threshold if threshold is not None else meta["threshold"])
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._model = model.to(self.device).eval()

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        import torch

        if len(pixels) == 0:
            return ScoreBatch(np.zeros(0, dtype=np.float32))
        x = torch.from_numpy(self.preprocessing.tensor(pixels)).to(self.device)
        with torch.inference_mode():
            probs = torch.sigmoid(self._model(x).float()).cpu().numpy()
        return ScoreBatch(np.clip(probs.astype(np.float32), 0.0, 1.0))
