"""MLflow experiment tracking for a training run, loaded only when logging.mlflow.enabled."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

from nsfw_tui.core.config import flatten

from .errors import TrackingError

log = logging.getLogger(__name__)

_STATUS = {"done": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}


class NullTracker:
    """What a run logs to when tracking is off: nothing."""

    def start(self, run_id: str, cfg: Any, tags: dict[str, str]) -> None:
        pass

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        pass

    def log_model(self, store: Any, model_id: str, metrics: dict[str, Any]) -> str | None:
        return None

    def finish(self, status: str, checkpoint_dir: Path | None = None) -> None:
        pass


class MlflowTracker:
    """Flattened config as params, per-epoch metrics, the git commit tag, the checkpoint."""

    def __init__(self, mlflow_cfg: Any) -> None:
        try:
            import mlflow
        except ImportError:
            raise TrackingError(
                "logging.mlflow.enabled=true needs MLflow, which is not installed: "
                "pip install 'nsfw-tui[mlflow]', or set logging.mlflow.enabled=false"
            ) from None
        from nsfw_tui.core.errors import NsfwTuiError
        from nsfw_tui.models.mlflow_registry import check_alias

        alias = mlflow_cfg.get("registered_model_alias")
        if alias:
            try:
                check_alias(str(alias))
            except NsfwTuiError as exc:  # refused before the run, not after the training
                raise TrackingError(f"logging.mlflow.registered_model_alias: {exc}") from None
        self.mlflow = mlflow
        self.cfg = mlflow_cfg
        self.tracking_uri = str(mlflow_cfg.tracking_uri)
        self.experiment = str(mlflow_cfg.experiment_name)
        self.active = False

    def start(self, run_id: str, cfg: Any, tags: dict[str, str]) -> None:
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment(self.experiment)
        mlflow.start_run(run_name=run_id)
        self.active = True
        # MLflow params are strings of bounded length; lists and nulls go in as text
        mlflow.log_params({key: str(value)[:500] for key, value in flatten(cfg).items()})
        mlflow.set_tags({k: v for k, v in tags.items() if v})

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        values = {
            key: float(value)
            for key, value in metrics.items()
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value)
        }
        self.mlflow.log_metrics(values, step=int(metrics["epoch"]))

    def log_model(self, store: Any, model_id: str, metrics: dict[str, Any]) -> str | None:
        """The trained model as a registered pyfunc (its ONNX export, checked against PyTorch).

        Returns the registered version's ``models:/NAME/VERSION`` URI.
        """
        if not self.active:
            return None
        from nsfw_tui.models.mlflow_registry import publish

        from .export import export_onnx

        with tempfile.TemporaryDirectory(prefix="nsfw-tui-mlflow-") as tmp:
            report = export_onnx(
                store, model_id=model_id, output=Path(tmp) / f"{model_id}.onnx", register=False
            )
            published = publish(
                report.path,
                mlflow_cfg=self.cfg,
                kind="checkpoint",
                metrics=metrics,
                model_id=model_id,
                alias=str(self.cfg.get("registered_model_alias") or "") or None,
            )
        log.info("registered %s as %s", model_id, published.uri)
        return published.uri

    def finish(self, status: str, checkpoint_dir: Path | None = None) -> None:
        if not self.active:
            return
        try:
            if checkpoint_dir is not None:
                self.mlflow.log_artifacts(str(checkpoint_dir), artifact_path="checkpoint")
        finally:
            self.mlflow.end_run(status=_STATUS.get(status, "FAILED"))
            self.active = False


def tracker_for(cfg: Any) -> NullTracker | MlflowTracker:
    """The tracker the config asks for; TrackingError at once if MLflow is wanted but missing."""
    mlflow_cfg = cfg.get("logging", {}).get("mlflow", {}) if hasattr(cfg, "get") else {}
    if mlflow_cfg and bool(mlflow_cfg.get("enabled", False)):
        return MlflowTracker(mlflow_cfg)
    return NullTracker()
