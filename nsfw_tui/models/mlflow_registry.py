"""Models in an MLflow Model Registry: log any model here as a pyfunc, bring a version back."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nsfw_tui.core.config_schema import ScanConfig
from nsfw_tui.core.errors import MissingExtraError, NsfwTuiError, extra_line
from nsfw_tui.core.preprocess import OPEN_NSFW, Preprocessing
from nsfw_tui.core.scorers import BUILTIN_SHA256, builtin_model_path
from nsfw_tui.core.store import ModelRow, Store

from .adapted_onnx import export_adapted
from .onnx_files import describe, read_metadata, write_model
from .onnx_import import AddReport, add_onnx_file
from .pyfunc_code import MODEL_FILE, stage_code

INLINE_ENV = "NSFW_TUI_PYFUNC_DECODE_INLINE"  # nsfw_tui.pyfunc.model reads it (no import here)


@contextlib.contextmanager
def _decode_inline() -> Any:
    """While MLflow runs the logged model's predict on its input example in this process, the
    model decodes in the calling thread: see nsfw_tui.pyfunc.model.INLINE_ENV."""
    before = os.environ.get(INLINE_ENV)
    os.environ[INLINE_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(INLINE_ENV, None)
        else:
            os.environ[INLINE_ENV] = before


ARTIFACT = "onnx_model"  # the key nsfw_tui/pyfunc/model.py reads the file by
ARTIFACT_PATH = "model"
# MLflow's rules for an alias; "latest" and v<number> would shadow versions
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))/?")
# what predict imports outside the standard library, pinned to what logged the model
REQUIREMENTS = ("mlflow", "onnxruntime", "numpy", "pillow")


def import_mlflow(what: str = "this command") -> Any:
    """The mlflow module, or one line naming the extra that brings it."""
    try:
        import mlflow
    except ModuleNotFoundError:
        raise MissingExtraError(extra_line("mlflow", "mlflow", what)) from None
    return mlflow


def quiet_mlflow() -> None:
    """For a command's own output: MLflow's INFO lines and download bars say nothing new."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _text(exc: Any) -> str:
    """An MlflowException's message as one line (its str() carries an error code too)."""
    lines = str(getattr(exc, "message", exc)).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def check_alias(alias: str) -> str:
    if not _ALIAS.fullmatch(alias) or alias == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise NsfwTuiError(
            f"{alias!r} cannot be an MLflow alias: use letters, digits, _ and -, not 'latest' "
            "or v<number>"
        )
    return alias


def onnx_for(row: ModelRow, dest: Path) -> Path:
    """A self-describing ONNX file at ``dest`` for a built-in, adapted or onnx model.

    (A checkpoint is exported by the trainer, checked against PyTorch.) The description
    carries the model's current threshold in the store, so the registry serves the same
    calls as this app.
    """
    import hashlib

    import onnx
    from onnx.external_data_helper import uses_external_data

    if row.kind == "adapted":
        return export_adapted(row, dest)
    if row.kind == "builtin":
        data = builtin_model_path().read_bytes()
        if hashlib.sha256(data).hexdigest() != BUILTIN_SHA256:
            raise NsfwTuiError("the built-in model file is damaged (checksum mismatch)")
        props = describe(row.id, OPEN_NSFW, row.threshold, row.metrics, architecture="open_nsfw")
        props["output"] = "softmax2"  # the network's own (N, 2) softmax, NSFW second
        write_model(onnx.load_from_string(data), dest, props)
        return dest
    if row.kind != "onnx":
        raise NsfwTuiError(f"model {row.id!r} is of kind {row.kind!r}: export it with the trainer")
    if not row.path or not Path(row.path).is_file():
        raise NsfwTuiError(f"the ONNX file of model {row.id!r} is missing: {row.path}")
    if not row.preprocessing:
        raise NsfwTuiError(f"model {row.id!r} has no preprocessing recorded")
    proto = onnx.load(row.path, load_external_data=False)
    if any(uses_external_data(t) for t in proto.graph.initializer):
        raise NsfwTuiError(f"{row.path} keeps its weights in separate files; MLflow gets one file")
    own = {p.key: p.value for p in proto.metadata_props}
    pre = Preprocessing.from_dict(row.preprocessing)
    props = {**describe(row.id, pre, row.threshold, row.metrics), **own}
    # the store decides these: a threshold set since, the output kind it was added with
    props.update(
        {
            "threshold": repr(float(row.threshold)),
            "preprocessing": json.dumps(pre.to_dict(), sort_keys=True),
            "output": str(row.meta.get("output", "probability")),
        }
    )
    write_model(proto, dest, props)
    return dest


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    alias: str | None
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def model_config(onnx_path: Path) -> dict[str, Any]:
    """What the pyfunc needs beside the file, from the file's own description."""
    props = read_metadata(onnx_path)
    missing = [k for k in ("preprocessing", "output", "threshold") if k not in props]
    if missing:
        raise NsfwTuiError(f"{onnx_path} does not describe itself (no {', '.join(missing)})")
    scan = ScanConfig()
    return {
        "model_id": props.get("model_id", onnx_path.stem),
        "preprocessing": json.loads(props["preprocessing"]),
        "output": props["output"],
        "threshold": float(props["threshold"]),
        "use_draft": bool(scan.use_draft),
        "max_frames": int(scan.max_frames),
        "batch_size": int(scan.batch_size),
        "decode_workers": 2,
        "decode_timeout_s": float(scan.timeout_s),
    }


def version_tags(config: dict[str, Any], kind: str, metrics: dict[str, Any]) -> dict[str, str]:
    """The threshold and the numeric metrics, as a registry lists them beside the version."""
    tags = {
        key: f"{float(value):.6g}"
        for key, value in sorted(metrics.items())
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }
    # the threshold the model calls with, in full: a run's metrics round theirs
    tags["threshold"] = repr(float(config["threshold"]))
    tags["nsfw_tui.model_id"] = str(config["model_id"])
    tags["nsfw_tui.kind"] = kind
    return tags


def example_uri() -> str:
    """A small grey PNG as a data URI: the input example MLflow predicts on while logging."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]


def publish(
    onnx_path: Path,
    *,
    mlflow_cfg: Any,
    kind: str,
    metrics: dict[str, Any],
    model_id: str | None = None,
    alias: str | None = None,
    run_name: str | None = None,
    say: Callable[[str], None] | None = None,
) -> Published:
    """Log ``onnx_path`` as a pyfunc and register it as a new version of the model name.

    Logs into the active MLflow run (a training run) or, without one, into a run of its own
    in ``mlflow_cfg.experiment_name``. The version is tagged with the threshold and the
    metrics, and takes ``alias`` (MLflow moves an alias from the version that held it).
    """
    mlflow = import_mlflow("MLflow logging")
    from mlflow.exceptions import MlflowException

    if alias:
        check_alias(alias)
    name = str(mlflow_cfg.registered_model_name)
    config = model_config(onnx_path)
    if model_id:  # the store's id, where the file's own names the model it was exported from
        config["model_id"] = model_id
    tags = version_tags(config, kind, metrics)
    say = say or (lambda _: None)
    own_run = mlflow.active_run() is None
    status = "FAILED"  # what the run of its own ends as unless the version is registered
    try:
        if own_run:
            mlflow.set_tracking_uri(str(mlflow_cfg.tracking_uri))
            mlflow.set_experiment(str(mlflow_cfg.experiment_name))
            mlflow.start_run(run_name=run_name or f"export-{config['model_id']}")
        run_id = mlflow.active_run().info.run_id
        with tempfile.TemporaryDirectory(prefix="nsfw-tui-pyfunc-") as tmp:
            code = stage_code(Path(tmp))
            say(f"logging {config['model_id']} as an MLflow pyfunc and registering it as {name}")
            saved_path = list(sys.path)  # checking the example loads the model: see below
            try:
                # MLflow sets its own warning filters inside: warnings are caught, not filtered
                with warnings.catch_warnings(record=True) as caught, _decode_inline():
                    warnings.simplefilter("default")
                    info = mlflow.pyfunc.log_model(
                        name=ARTIFACT_PATH,
                        python_model=str(MODEL_FILE),
                        artifacts={ARTIFACT: str(onnx_path)},
                        code_paths=[str(code)],
                        model_config=config,
                        input_example=[example_uri()],
                        pip_requirements=_requirements(),
                        registered_model_name=name,
                    )
            finally:
                # loading put the model's temporary code folder first on sys.path, also when
                # logging failed; decode processes spawned later here must import the app
                sys.path[:] = saved_path
            for w in caught:  # the answer's dicts mix numbers, text and nulls: Any is right
                if "Any type hint" not in str(w.message):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        if alias:
            client.set_registered_model_alias(name, alias, version)
        status = "FINISHED"
    except MlflowException as exc:
        raise NsfwTuiError(f"MLflow refused the model: {_text(exc)}") from None
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if own_run and mlflow.active_run() is not None:
            mlflow.end_run(status=status)
    return Published(name, version, alias, run_id, tags)


@dataclass(frozen=True)
class Fetched:
    added: AddReport
    name: str
    version: str


def parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, version or "latest", alias) of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    match = _URI.fullmatch(uri)
    if match is None:
        raise NsfwTuiError(
            f"{uri!r} is not a registered model URI: give models:/NAME/VERSION, "
            "models:/NAME/latest or models:/NAME@ALIAS"
        )
    version = match["version"]
    if version is not None and version != "latest" and not version.isdigit():
        raise NsfwTuiError(f"the version in {uri!r} must be a number or 'latest'")
    return match["name"], version, match["alias"]


def _resolve(client: Any, name: str, version: str | None, alias: str | None) -> str:
    if alias is not None:
        return str(client.get_model_version_by_alias(name, alias).version)
    if version == "latest":
        found = client.search_model_versions(f"name = '{name}'")
        if not found:
            raise NsfwTuiError(f"the registered model {name!r} has no versions")
        return str(max(int(v.version) for v in found))
    return str(client.get_model_version(name, str(version)).version)


def fetch(
    store: Store,
    uri: str,
    *,
    tracking_uri: str,
    copy_into: Path,
    model_id: str | None = None,
    threshold: float | None = None,
) -> Fetched:
    """Download a registered version's ONNX file and add it to the store as an onnx model."""
    name, version, alias = parse_uri(uri)
    mlflow = import_mlflow("models add models:/...")
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    try:
        resolved = _resolve(client, name, version, alias)
        with tempfile.TemporaryDirectory(prefix="nsfw-tui-fetch-") as tmp:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{resolved}", dst_path=tmp
                )
            )
            files = sorted((local / "artifacts").glob("*.onnx"))
            if len(files) != 1:
                raise NsfwTuiError(
                    f"{uri} is not a model this app logged: it carries {len(files)} ONNX "
                    "artifacts, not one"
                )
            default_id = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{name}-v{resolved}")
            added = add_onnx_file(
                store,
                files[0],
                model_id=model_id or default_id,
                threshold=threshold,
                copy_into=copy_into,
                source=f"models:/{name}/{resolved} at {tracking_uri}",
            )
    except MlflowException as exc:
        raise NsfwTuiError(f"cannot read {uri} from {tracking_uri}: {_text(exc)}") from None
    return Fetched(added, name, resolved)
