"""Registering an ONNX file from elsewhere: preprocessing from its metadata or from flags."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_tui.core.atomic import atomic_path
from nsfw_tui.core.errors import NsfwTuiError, one_line
from nsfw_tui.core.preprocess import Preprocessing
from nsfw_tui.core.store import Store

from .onnx_files import cpu_session, read_metadata

OUTPUT_KINDS = ("softmax2", "probability", "logit")
DESCRIBE = (
    "--input-size H W --mean R G B --std R G B --output softmax2|probability|logit (and "
    "--layout, --channel-order, --scale, --resize-mode, --crop where they differ from NCHW, "
    "RGB, 1/255, stretch)"
)


@dataclass
class AddReport:
    model_id: str
    path: Path
    preprocessing: Preprocessing
    output: str
    threshold: float
    from_metadata: list[str]  # what the file's own metadata supplied


def add_onnx_file(
    store: Store,
    path: str | os.PathLike,
    *,
    model_id: str | None = None,
    threshold: float | None = None,
    output: str | None = None,
    preprocessing: dict[str, Any] | None = None,
    copy_into: str | os.PathLike | None = None,
    source: str | None = None,
) -> AddReport:
    """Validate an ONNX classifier and register it as an ``onnx`` model.

    With ``copy_into`` (the home's models folder) the file is copied there and the copy is
    registered, so moving or deleting the original later breaks nothing; without it the
    model points at the file where it is.

    Preprocessing, output kind and threshold come from the file's metadata (the keys
    ``export_onnx`` writes) where present; the given values override them. ``source``
    says where the file came from when that is not its path (a registry's model URI). The
    file must pass onnx.checker and score one zero image of the declared input size.
    """
    import onnx

    file = Path(path)
    if not file.is_file():
        raise NsfwTuiError(f"ONNX file not found: {file}")
    props = read_metadata(file)
    if not model_id and props.get("model_id"):  # a file this app exported: name it as export did
        model_id = props["model_id"] + ("-onnx-int8" if "quantization" in props else "-onnx")
    model_id = model_id or re.sub(r"[^A-Za-z0-9_.-]+", "-", file.stem).strip("-") or "onnx-model"
    if store.model(model_id) is not None:
        raise NsfwTuiError(f"a model with id {model_id!r} exists already; choose another with --id")
    try:
        onnx.checker.check_model(os.fspath(file), full_check=True)
        session = cpu_session(file)
    except Exception as exc:
        raise NsfwTuiError(f"{file} is not a valid ONNX model: {one_line(exc)}") from None
    shape = list(session.get_inputs()[0].shape)
    spec, used = _preprocessing(props, preprocessing or {}, shape, file)
    output = output or props.get("output")
    if output is None:
        raise NsfwTuiError(f"{file} does not say what its output is; give {DESCRIBE}")
    if output not in OUTPUT_KINDS:
        raise NsfwTuiError(f"--output must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
    if threshold is None and "threshold" in props:
        threshold, used = _number(props["threshold"], "threshold"), [*used, "threshold"]
    threshold = 0.5 if threshold is None else float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise NsfwTuiError(f"--threshold must be within [0, 1], got {threshold}")
    _smoke_test(session, spec, output, file)
    metrics = _json(props.get("metrics", "{}"), "metrics") if "metrics" in props else {}
    meta = {
        "output": output,
        "added_from": source or os.path.abspath(file),
        "metadata_keys": used,
    }
    registered = Path(os.path.abspath(file))
    if copy_into is not None:
        registered = _copy(file, Path(copy_into) / f"{model_id}.onnx")
    with store.write():
        store.add_model(
            model_id,
            "onnx",
            threshold=threshold,
            path=os.fspath(registered),
            metrics=metrics if isinstance(metrics, dict) else {},
            preprocessing=spec.to_dict(),
            meta=meta,
        )
    return AddReport(model_id, registered.resolve(), spec, output, threshold, used)


def _copy(file: Path, dest: Path) -> Path:
    """``file`` copied whole to ``dest``; refused for a graph whose weights live in other files."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    graph = onnx.load(os.fspath(file), load_external_data=False).graph
    if any(uses_external_data(t) for t in graph.initializer):
        raise NsfwTuiError(
            f"{file} keeps its weights in separate files; add it with --link to use it in place"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(file, tmp)
    return dest


def _json(text: str, key: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise NsfwTuiError(
            f"the file's metadata {key!r} is not valid JSON: {text[:80]!r}"
        ) from None


def _number(text: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise NsfwTuiError(f"the file's metadata {key!r} is not a number: {text[:80]!r}") from None


def _preprocessing(
    props: dict[str, str], given: dict[str, Any], shape: list[Any], file: Path
) -> tuple[Preprocessing, list[str]]:
    """The file's preprocessing (metadata, then ``given`` on top), checked; and the keys used."""
    spec: dict[str, Any] = {}
    used: list[str] = []
    if "preprocessing" in props:
        spec, used = dict(_json(props["preprocessing"], "preprocessing")), ["preprocessing"]
    else:
        for key in ("input_size", "mean", "std", "crop"):
            if key in props:
                spec["resize" if key == "input_size" else key] = _json(props[key], key)
                used.append(key)
        for key in ("layout", "channel_order", "resize_mode"):
            if key in props:
                spec[key], used = props[key], [*used, key]
        if "scale" in props:
            spec["scale"], used = _number(props["scale"], "scale"), [*used, "scale"]
    given = {("resize" if k == "input_size" else k): v for k, v in given.items()}
    spec.update({k: list(v) if isinstance(v, tuple) else v for k, v in given.items()})
    if not used and not given:
        raise NsfwTuiError(f"{file} carries no preprocessing metadata; give {DESCRIBE}")
    static = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if "layout" not in spec and len(static) == 4:
        spec["layout"] = "NHWC" if static[3] == 3 and static[1] != 3 else "NCHW"
    if "resize" not in spec and len(static) == 4:
        hw = static[1:3] if spec.get("layout") == "NHWC" else static[2:4]
        if all(hw):
            spec["resize"] = hw
    missing = [
        flag
        for key, flag in (
            ("resize", "--input-size H W"),
            ("mean", "--mean R G B"),
            ("std", "--std R G B"),
        )
        if key not in spec
    ]
    if missing:
        raise NsfwTuiError(f"{file}: the preprocessing lacks {', '.join(missing)}; give {DESCRIBE}")
    spec.setdefault("channel_order", "RGB")
    if "scale" not in spec:
        if max(abs(float(v)) for v in spec["mean"]) > 1.5:
            raise NsfwTuiError(
                f"--mean {spec['mean']} looks like 0..255 units but the default --scale is 1/255; "
                "give --scale 1 (or the mean and std in 0..1 units)"
            )
        spec["scale"] = 1 / 255
    try:
        return Preprocessing.from_dict(spec), used
    except (TypeError, ValueError) as exc:
        raise NsfwTuiError(f"{file}: {exc}") from None


def _smoke_test(session: Any, spec: Preprocessing, output: str, file: Path) -> None:
    """One inference on a zero image of the declared size; the output must fit ``output``."""
    h, w = spec.input_size
    x = spec.tensor(np.zeros((1, h, w, 3), dtype=np.uint8))
    try:
        result = np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], np.float32)
    except Exception as exc:
        raise NsfwTuiError(
            f"{file} rejects a {'x'.join(map(str, x.shape))} {spec.layout} input: {one_line(exc)}"
            " (check --input-size and --layout)"
        ) from None
    want = 2 if output == "softmax2" else 1
    if result.size != want or not np.all(np.isfinite(result)):
        raise NsfwTuiError(
            f"{file} gives output of shape {list(result.shape)} for one image; --output {output} "
            f"needs {want} finite value{'s' if want > 1 else ''} per image"
        )
    if output in ("softmax2", "probability") and not np.all(
        (result >= -1e-6) & (result <= 1 + 1e-6)
    ):
        raise NsfwTuiError(
            f"{file} output {result.ravel().tolist()} is not in [0, 1]; is it --output logit?"
        )
