"""The training loop, in plain PyTorch: epochs of AdamW steps, validation, best-epoch tracking."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nsfw_tui.core.metrics import auroc, confusion

# Metrics a run records per epoch; metrics.monitor names one of the val_ ones (its choices,
# MONITORS in core/config_schema.py, are checked against this list by the tests).
EPOCH_METRICS = (
    "train_loss",
    "train_auroc",
    "train_accuracy",
    "val_loss",
    "val_auroc",
    "val_accuracy",
    "val_recall",
    "val_precision",
)


@dataclass
class TrainEvent:
    # "start" | "skipped" | "batch" | "epoch" | "registering" | "done" | "failed" | "cancelled"
    kind: str
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    loss: float | None = None
    metrics: dict = field(default_factory=dict)
    message: str = ""


@dataclass
class FitOutcome:
    """What the loop ended with; the best epoch's weights and val scores when there is one."""

    status: str  # "done" | "cancelled" | "failed"
    epochs: list[dict[str, Any]]
    best_epoch: int | None = None
    best_state: dict[str, Any] | None = None
    val_labels: np.ndarray | None = None
    val_scores: np.ndarray | None = None
    message: str = ""


class _Stop(Exception):
    """Raised inside the loop to unwind to one place that builds the outcome."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _ignore(_: TrainEvent) -> None:
    pass


def _never() -> bool:
    return False


def fit(
    model: Any,
    train_loader: Any,
    val_loader: Any,
    cfg: Any,
    device: Any,
    *,
    pos_weight: float,
    on_event: Callable[[TrainEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitOutcome:
    """Train ``model`` for training.max_epochs and keep the epoch best by metrics.monitor.

    ``should_stop`` is asked before every batch (train and val): a True ends the run as
    cancelled. A non-finite loss ends it as failed. Neither writes anything: saving is the
    caller's job, and only for a run that finished.
    """
    import torch

    emit = on_event or _ignore
    stop = should_stop or _never
    epochs = int(cfg.training.max_epochs)
    batches = len(train_loader)
    model.to(device)  # before the optimizer takes its parameters
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=float(cfg.optimizer.learning_rate),
        weight_decay=float(cfg.optimizer.weight_decay),
    )
    scheduler = make_scheduler(optimizer, cfg.training, epochs, batches)
    # pos_weight scales the NSFW term so a rare NSFW class still pulls its weight
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))
    autocast, scaler = _precision(cfg.trainer.get("precision", 32), device)
    clip = float(cfg.training.grad_clip)
    monitor = str(cfg.metrics.monitor)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    emit(TrainEvent("start", epochs=epochs, batches=batches, message=f"training on {device}"))
    try:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            model.train()
            losses, labels, scores = [], [], []
            for batch, (x, y, ok) in enumerate(train_loader, start=1):
                if stop():
                    raise _Stop("cancelled", f"cancelled at epoch {epoch}, batch {batch}")
                x, y = _usable(x, y, ok, device)
                if y is None:
                    continue
                with autocast():
                    logits = model(x).float()
                    loss = loss_fn(logits, y)
                if not torch.isfinite(loss):
                    raise _Stop(
                        "failed",
                        f"the training loss became {loss.item()} at epoch {epoch}, batch {batch}; "
                        "try a lower optimizer.learning_rate or check the images",
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(loss.item() * len(y))
                labels.append(y.detach().cpu().numpy())
                scores.append(torch.sigmoid(logits.detach()).cpu().numpy())
                emit(TrainEvent("batch", epoch, epochs, batch, batches, loss=loss.item()))

            # train_* metrics come from the augmented batches as they were trained on (as
            # Lightning logs them): cheaper than a second pass, and early on they lag val
            train = _summary("train", losses, labels, scores)
            val = evaluate(model, val_loader, loss_fn, device, stop, autocast)
            if not math.isfinite(val["loss"]):
                raise _Stop("failed", f"the validation loss became {val['loss']} at epoch {epoch}")
            metrics = {
                "epoch": epoch,
                **train,
                **{k: v for k, v in val.items() if k.startswith("val_")},
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - started, 3),
            }
            history.append(metrics)
            if _better(metrics.get(monitor), best, monitor):
                best = {
                    "value": metrics.get(monitor),
                    "epoch": epoch,
                    # a CPU copy: later epochs keep changing the live tensors
                    "state": {
                        k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                    },
                    "labels": val["labels"],
                    "scores": val["scores"],
                }
            emit(TrainEvent("epoch", epoch, epochs, batches, batches, metrics=dict(metrics)))
    except _Stop as end:
        return FitOutcome(end.status, history, message=end.message)

    return FitOutcome(
        "done",
        history,
        best_epoch=best.get("epoch"),
        best_state=best.get("state"),
        val_labels=best.get("labels"),
        val_scores=best.get("scores"),
        message=f"best epoch {best.get('epoch')} by {monitor}",
    )


def evaluate(
    model: Any,
    loader: Any,
    loss_fn: Any,
    device: Any,
    stop: Callable[[], bool] = _never,
    autocast: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Loss and metrics of ``model`` over ``loader`` in eval mode, plus the raw scores."""
    import contextlib

    import torch

    autocast = autocast or contextlib.nullcontext
    model.eval()
    losses, labels, scores = [], [], []
    with torch.inference_mode():
        for batch, (x, y, ok) in enumerate(loader, start=1):
            if stop():
                raise _Stop("cancelled", f"cancelled while validating, batch {batch}")
            x, y = _usable(x, y, ok, device)
            if y is None:
                continue
            with autocast():
                logits = model(x).float()
            losses.append(loss_fn(logits, y).item() * len(y))
            labels.append(y.cpu().numpy())
            scores.append(torch.sigmoid(logits).cpu().numpy())
    out = _summary("val", losses, labels, scores)
    out["loss"] = out["val_loss"]
    out["labels"] = np.concatenate(labels) if labels else np.zeros(0)
    out["scores"] = np.concatenate(scores) if scores else np.zeros(0)
    return out


def _usable(x: Any, y: Any, ok: Any, device: Any) -> tuple[Any, Any]:
    """The batch without images that failed to decode, on the device; (None, None) if empty."""
    if not bool(ok.all()):
        x, y = x[ok], y[ok]
    if len(y) == 0:
        return None, None
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _summary(prefix: str, losses: list, labels: list, scores: list) -> dict[str, Any]:
    y = np.concatenate(labels).astype(int) if labels else np.zeros(0, dtype=int)
    p = np.concatenate(scores).astype(float) if scores else np.zeros(0)
    at_half = confusion(y, p, 0.5)
    out = {
        f"{prefix}_loss": float(sum(losses) / len(y)) if len(y) else float("nan"),
        f"{prefix}_auroc": auroc(y, p),
        f"{prefix}_accuracy": at_half.accuracy,
    }
    if prefix == "val":
        out["val_recall"] = at_half.recall
        out["val_precision"] = at_half.precision
    return out


def _better(value: float | None, best: dict[str, Any], monitor: str) -> bool:
    if "epoch" not in best:
        return True  # the first epoch is the best so far, whatever its value
    if value is None:
        return False
    if best["value"] is None:
        return True
    # strictly better: on a tie the earlier (less trained) epoch stays
    return value < best["value"] if monitor.endswith("loss") else value > best["value"]


def make_scheduler(optimizer: Any, training: Any, epochs: int, batches: int) -> Any:
    """Per-step learning-rate schedule: linear warm-up, then none, cosine or step decay."""
    import torch

    total = max(1, epochs * batches)
    warmup = min(int(training.get("warmup_epochs", 0)) * batches, total - 1)
    kind = str(training.get("scheduler", "none"))
    step_every = max(1, epochs // 3) * batches

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if kind == "step":
            return 0.1 ** ((step - warmup) // step_every)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _precision(precision: Any, device: Any) -> tuple[Callable[[], Any], Any]:
    """(autocast context factory, grad scaler) for trainer.precision on ``device``."""
    import contextlib
    import functools

    import torch

    text = str(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=text == "16-mixed")
    if text in ("16-mixed", "bf16-mixed"):
        dtype = torch.float16 if text == "16-mixed" else torch.bfloat16
        return functools.partial(torch.autocast, device.type, dtype=dtype), scaler
    return contextlib.nullcontext, scaler
