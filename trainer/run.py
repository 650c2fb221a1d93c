"""A training run end to end: labels from the store, split, fit, checkpoint, model and run rows."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from nsfw_tui.core.config import to_container
from nsfw_tui.core.errors import ConfigError, StoreError, one_line
from nsfw_tui.core.home import Home
from nsfw_tui.core.metrics import confusion, threshold_for_recall
from nsfw_tui.core.store import Store
from nsfw_tui.core.thresholds import format_threshold, too_many_false_alarms

from . import data
from .checkpoint import save_checkpoint
from .errors import CheckpointError, NotEnoughLabelsError
from .fit import EPOCH_METRICS, FitOutcome, TrainEvent, fit
from .provenance import git_commit, library_versions
from .tracking import tracker_for


def new_run_id() -> str:
    """Sortable by time, unique across processes: 20251126-221503-3f9a0c."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


log = logging.getLogger(__name__)

# A hidden .part folder older than this was left by a killed run, not one still saving.
STALE_PART_S = 3600
# How far under its validation image's score a stored threshold sits (threshold_metrics).
THRESHOLD_MARGIN = 1e-4


@dataclass
class RunResult:
    run_id: str
    status: str  # "done" | "failed" | "cancelled"
    model_id: str | None
    threshold: float | None
    best_epoch: int | None
    metrics: dict
    epochs: list[dict]
    val_hashes: list[str]
    checkpoint: str | None
    counts: dict
    message: str = ""
    warning: str = ""  # why a model asked to be activated was registered but not activated


def _ignore(_: TrainEvent) -> None:
    pass


def train(
    store_path: Path,
    home: Home,
    cfg: DictConfig,
    *,
    folder: str | None = None,
    activate: bool = False,
    on_event: Callable[[TrainEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Train on the store's current labels and register the result as a ``checkpoint`` model.

    ``cfg`` comes from ``load_config``, whose schema has checked every value; a device the
    machine lacks, too few labels, or unavailable pretrained weights raise an NsfwTuiError
    before anything is written. From then on the run has a row in the store; it ends as
    done (checkpoint saved, model registered, activated if ``activate``), cancelled
    (``should_stop`` returned True) or failed, and neither of those two leaves a file or
    a model behind. Opens its own store connection, so it may run in a worker thread.
    """
    tracker = tracker_for(cfg)  # before torch loads: a tracking setting is refused at once
    device = choose_device(cfg.trainer)
    if str(cfg.trainer.get("precision", 32)) == "16-mixed" and device.type != "cuda":
        raise ConfigError(
            f"trainer.precision=16-mixed needs a CUDA GPU (training runs on {device.type}); "
            "use 32 or bf16-mixed"
        )
    store = Store.open(store_path, check=False)
    try:
        return _train(
            store, home, cfg, folder, activate, on_event or _ignore, should_stop, device, tracker
        )
    finally:
        store.close()


def _train(
    store: Store,
    home: Home,
    cfg: DictConfig,
    folder: str | None,
    activate: bool,
    emit: Callable[[TrainEvent], None],
    should_stop: Callable[[], bool] | None,
    device: Any,
    tracker: Any,
) -> RunResult:
    samples, skipped = data.labelled_samples(
        store, folder if folder is not None else cfg.data.folder
    )
    # Near copies (resized, recompressed) of one image stay on one side of the split too.
    dupes_cfg = cfg.get("dupes")
    groups = data.near_duplicate_keys(store, samples, dupes_cfg) if dupes_cfg else None
    train_set, val_set = data.split_samples(
        samples, float(cfg.data.split.val_fraction), int(cfg.data.split.seed), groups
    )
    try:
        data.check_counts(train_set, val_set)
    except NotEnoughLabelsError as exc:
        if not skipped:
            raise
        where, why = skipped[0]
        raise NotEnoughLabelsError(
            f"{exc} ({len(skipped)} labelled images were skipped, e.g. {where}: {why})"
        ) from None
    counts = {
        "train": data.class_counts(train_set),
        "val": data.class_counts(val_set),
        "skipped": len(skipped),
    }
    tr, va = counts["train"], counts["val"]
    emit(
        TrainEvent(
            "start",
            message=f"labels: train {tr['nsfw']} NSFW + {tr['sfw']} SFW, val {va['nsfw']} "
            f"NSFW + {va['sfw']} SFW ({len(skipped)} labelled images skipped)",
        )
    )
    # one line per image the count above left out, once: the files were checked up front
    for where, why in skipped:
        emit(TrainEvent("skipped", message=f"skipped {where}: {why}"))
    val_hashes = [s.sha256 for s in val_set]
    seed = int(cfg.training.seed)
    deterministic = bool(cfg.training.deterministic)
    size = data.input_size(cfg.data)
    preprocessing = data.val_preprocessing(cfg.data)

    from . import models  # torch and timm load here, not when the module is imported

    with _reproducible(seed, deterministic):
        # built before the run row: no weights (no network) must leave no trace in the store
        model = models.build_model(cfg.model, size)
        train_loader, val_loader = _loaders(cfg, train_set, val_set, preprocessing, seed, device)
        run_id = new_run_id()
        model_id = f"{cfg.model.name}-{run_id}"
        commit = git_commit()
        tracker.start(run_id, cfg, {"mlflow.source.git.commit": commit or "", "run_id": run_id})
        summary: dict[str, Any] = {"counts": counts, "message": ""}
        try:
            store.insert_run(run_id, to_container(cfg), summary, val_hashes)
        except BaseException:
            _guarded(tracker.finish, "failed", None)
            raise
        _remove_stale_parts(home.models_dir)

        history: list[dict[str, Any]] = []

        def on_fit_event(event: TrainEvent) -> None:
            if event.kind == "epoch":
                history.append(event.metrics)
                _guarded(tracker.log_epoch, event.metrics)
                _guarded(store.update_run_epochs, run_id, history)
            emit(event)

        try:
            outcome = fit(
                model,
                train_loader,
                val_loader,
                cfg,
                device,
                pos_weight=counts["train"]["sfw"] / counts["train"]["nsfw"],
                on_event=on_fit_event,
                should_stop=should_stop,
            )
        except Exception as exc:  # anything the loop hits ends this run, never the app
            log.exception("training run %s failed", run_id)
            outcome = FitOutcome("failed", history, message=f"training failed: {one_line(exc)}")
        except KeyboardInterrupt:
            summary["message"] = "interrupted (Ctrl-C)"
            _guarded(store.close_run, run_id, "cancelled", history, summary)
            _guarded(tracker.finish, "cancelled", None)
            raise

        result = RunResult(
            run_id=run_id,
            status=outcome.status,
            model_id=None,
            threshold=None,
            best_epoch=None,
            metrics={},
            epochs=outcome.epochs,
            val_hashes=val_hashes,
            checkpoint=None,
            counts=counts,
            message=outcome.message,
        )
        directory = home.models_dir / run_id
        if outcome.status == "done":
            try:
                _finish(
                    store,
                    cfg,
                    model,
                    outcome,
                    result,
                    _Saving(directory, model_id, preprocessing, activate, device, commit),
                )
            except (CheckpointError, StoreError, OSError) as exc:
                shutil.rmtree(directory, ignore_errors=True)
                result.status, result.model_id, result.checkpoint = "failed", None, None
                result.threshold = result.best_epoch = None
                result.message = f"the trained model could not be saved: {one_line(exc)}"
        if result.status != "done":
            summary["message"] = result.message
            _guarded(store.close_run, run_id, result.status, outcome.epochs, summary)
        else:
            _register(tracker, store, result, emit)
        _guarded(tracker.finish, result.status, directory if result.status == "done" else None)
    emit(TrainEvent(result.status, epochs=int(cfg.training.max_epochs), message=result.message))
    return result


@dataclass(frozen=True)
class _Saving:
    """Where and how a finished run's model is kept."""

    directory: Path
    model_id: str
    preprocessing: Any
    activate: bool
    device: Any
    commit: str | None


def _finish(
    store: Store,
    cfg: DictConfig,
    model: Any,
    outcome: FitOutcome,
    result: RunResult,
    saving: _Saving,
) -> None:
    """Pick the threshold, save the best epoch's checkpoint, register it and close the run."""
    directory, model_id, preprocessing = saving.directory, saving.model_id, saving.preprocessing
    activate, device, commit = saving.activate, saving.device, saving.commit
    import torch

    target = float(cfg.metrics.target_recall)
    at = None
    if outcome.val_labels is not None and outcome.val_scores is not None:
        at = threshold_metrics(outcome.val_labels, outcome.val_scores, target)
    if at is None or outcome.best_state is None or outcome.best_epoch is None:
        raise CheckpointError("no validation image could be read, so no threshold can be set")
    threshold = at["threshold"]
    max_fpr = float(cfg.metrics.max_val_fpr)
    fpr = too_many_false_alarms(at, max_fpr)
    if fpr is not None:  # a threshold that calls nearly everything NSFW must not take over
        result.warning = (
            f"at threshold {format_threshold(threshold)} the model flags {fpr:.0%} of the "
            f"validation SFW images (false alarm rate {fpr:.4g} > metrics.max_val_fpr "
            f"{max_fpr:g}); registered, not made active"
        )
        activate = False
    best = outcome.epochs[outcome.best_epoch - 1]
    metrics = {key: best.get(key) for key in EPOCH_METRICS}
    metrics.update(at)
    model.load_state_dict(outcome.best_state)
    container = to_container(cfg)
    meta = {
        "model_id": model_id,
        "run_id": result.run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": str(cfg.model.name),
        "model": container["model"],
        "input_size": list(data.input_size(cfg.data)),
        "threshold": threshold,
        "target_recall": target,
        "monitor": str(cfg.metrics.monitor),
        "best_epoch": outcome.best_epoch,
        "metrics": metrics,
        "epochs": outcome.epochs,
        "preprocessing": preprocessing.to_dict(),
        "labels": result.counts,
        "config": container,
        "versions": library_versions(),
        "seed": int(cfg.training.seed),
        "deterministic": {
            "enabled": bool(cfg.training.deterministic),
            "algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "device": str(device),
            "threads": torch.get_num_threads(),
        },
        "git_commit": commit,
    }
    checkpoint = save_checkpoint(directory, model, meta)
    summary = {
        "metrics": metrics,
        "best_epoch": outcome.best_epoch,
        "threshold": threshold,
        "counts": result.counts,
        "message": outcome.message,
    }
    # one transaction: the model row and the finished run appear together or not at all
    with store.write():
        store.add_model(
            model_id,
            "checkpoint",
            threshold=threshold,
            path=str(checkpoint),
            metrics=metrics,
            preprocessing=preprocessing.to_dict(),
            meta={
                "run_id": result.run_id,
                "architecture": str(cfg.model.name),
                "best_epoch": outcome.best_epoch,
                "target_recall": target,
                "labels": result.counts,
                "git_commit": commit,
            },
            activate=activate,
        )
        store.close_run(
            result.run_id,
            "done",
            outcome.epochs,
            summary,
            checkpoint=str(checkpoint),
            model_id=model_id,
        )
    result.model_id, result.checkpoint = model_id, str(checkpoint)
    result.threshold, result.best_epoch, result.metrics = threshold, outcome.best_epoch, metrics
    result.message = (
        f"model {model_id}: best epoch {outcome.best_epoch}, "
        f"threshold {format_threshold(threshold)} "
        f"for recall >= {target:g} on validation"
    ) + (f"; {result.warning}" if result.warning else "")


def threshold_metrics(labels: Any, scores: Any, target_recall: float) -> dict[str, Any] | None:
    """The highest threshold reaching ``target_recall`` on these scores, and what it gives.

    Highest, because of the thresholds that catch enough NSFW it raises the fewest false
    alarms. None when there is no NSFW example to measure recall on.
    """
    threshold = threshold_for_recall(labels, scores, target_recall)
    if threshold is None:
        return None
    # That threshold is one validation image's own score. Stored as is, the float noise of
    # another batch size or of the ONNX copy (1e-7 to 1e-6) drops that image below it and the
    # recall below its target. Keep a point just under it instead: halfway to the next lower
    # score, at most THRESHOLD_MARGIN under; no validation image lies in between.
    s = np.asarray(scores, dtype=float)
    below = s[s < threshold]
    floor = float(below.max()) if len(below) else 0.0
    threshold = max((threshold + floor) / 2, threshold - THRESHOLD_MARGIN)
    at = confusion(labels, scores, threshold)
    return {
        "threshold": threshold,
        "val_recall_at_threshold": at.recall,
        "val_precision_at_threshold": at.precision,
        "val_fpr_at_threshold": at.fpr,
    }


# -- configuration and environment -----------------------------------------------------------


def choose_device(trainer_cfg: Any) -> Any:
    """CUDA, then MPS, then CPU; trainer.accelerator and trainer.devices force one."""
    import torch

    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    devices = trainer_cfg.get("devices", "auto")
    ids = list(devices) if isinstance(devices, Sequence) and not isinstance(devices, str) else []
    if len(ids) > 1 or (isinstance(devices, int) and devices > 1):
        raise ConfigError(
            "trainer.devices: this trainer uses one device; set trainer.devices=1 or an id like [0]"
        )
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if accelerator == "auto":
        accelerator = "gpu" if cuda else "mps" if mps else "cpu"
    if accelerator == "gpu":
        if not cuda:
            raise ConfigError(
                "trainer.accelerator=gpu but PyTorch sees no CUDA GPU; use trainer.accelerator=cpu"
            )
        index = int(ids[0]) if ids else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"trainer.devices=[{index}] but there are {torch.cuda.device_count()} CUDA devices"
            )
        return torch.device("cuda", index)
    if accelerator == "mps":
        if not mps:
            raise ConfigError("trainer.accelerator=mps but this machine has no MPS device")
        return torch.device("mps")
    return torch.device("cpu")


@contextlib.contextmanager
def _reproducible(seed: int, deterministic: bool) -> Iterator[None]:
    """Seed every generator; with ``deterministic``, deterministic kernels for the run only."""
    import torch

    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to repeat
        # warn_only: a few CUDA backward kernels (adaptive pooling) have no deterministic
        # form; they should warn, not stop a run
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2:]


def _seed_worker(worker_id: int) -> None:
    import torch

    # torch seeds each worker from the loader's generator; numpy and random follow it
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _loaders(
    cfg: DictConfig,
    train_set: list[data.Sample],
    val_set: list[data.Sample],
    preprocessing: Any,
    seed: int,
    device: Any,
) -> tuple[Any, Any]:
    import torch
    from torch.utils.data import DataLoader

    workers = int(cfg.data.num_workers)
    common: dict[str, Any] = {
        "batch_size": int(cfg.training.batch_size),
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
    }
    if workers:
        # fork in a threaded process (the TUI) can deadlock; spawn cannot
        common.update(
            multiprocessing_context="spawn", worker_init_fn=_seed_worker, persistent_workers=True
        )
    generator = torch.Generator()
    generator.manual_seed(seed)
    train_data = data.ImageDataset(train_set, preprocessing, data.train_transform(cfg.data))
    train = DataLoader(train_data, shuffle=True, generator=generator, **common)
    val = DataLoader(data.ImageDataset(val_set, preprocessing), shuffle=False, **common)
    return train, val


def _register(
    tracker: Any, store: Store, result: RunResult, emit: Callable[[TrainEvent], None]
) -> None:
    """The model into the MLflow registry; a failure is said, and the run stays done."""
    if getattr(tracker, "active", False):  # seconds of export and checks: say so first
        emit(TrainEvent("registering", message="registering the model in MLflow…"))
    try:
        uri = tracker.log_model(store, result.model_id, result.metrics)
        if uri:
            result.message += f"; registered in MLflow as {uri}"
    except Exception as exc:
        log.warning("registering %s in MLflow failed: %s", result.model_id, one_line(exc))
        result.message += f"; not registered in MLflow: {one_line(exc)}"


def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    """Run a side task (a progress write, MLflow) whose failure must not end training."""
    try:
        fn(*args)
    except Exception as exc:
        log.warning("%s failed: %s", getattr(fn, "__qualname__", fn), one_line(exc))


def _remove_stale_parts(models_dir: Path) -> None:
    cutoff = time.time() - STALE_PART_S
    for part in models_dir.glob(".*.part-*") if models_dir.is_dir() else []:
        with contextlib.suppress(OSError):
            if part.stat().st_mtime < cutoff:
                shutil.rmtree(part, ignore_errors=True)


__all__ = [
    "RunResult",
    "TrainEvent",
    "choose_device",
    "threshold_metrics",
    "train",
]
