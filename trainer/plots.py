"""Training curves as PNG files: loss, AUROC (accuracy for the baseline) and all metrics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsfw_tui.core.atomic import atomic_path

if TYPE_CHECKING:
    from nsfw_tui.core.store import RunRow

DEFAULT_DPI = 120
# trainer.models.BASELINE, spelled out: importing models would bring in torch
BASELINE = "baseline_cnn"


def quality_metric(run: RunRow) -> str:
    """The curve a run is judged by: accuracy for the baseline CNN, AUROC otherwise."""
    name = (run.config or {}).get("model", {}).get("name")
    return "accuracy" if name == BASELINE else "auroc"


def plot_series(run: RunRow) -> dict[str, dict[str, list[Any]]]:
    """What the figures show: per metric, the epochs and one train and one val point each.

    Kept apart from drawing so the numbers can be checked without reading pixels.
    """
    epochs = run.epochs or []
    x = [int(e.get("epoch", i + 1)) for i, e in enumerate(epochs)]

    def pair(metric: str) -> dict[str, list[Any]]:
        return {
            "epoch": x,
            "train": [e.get(f"train_{metric}") for e in epochs],
            "val": [e.get(f"val_{metric}") for e in epochs],
        }

    return {
        "loss": pair("loss"),
        "auroc": pair("auroc"),
        "accuracy": pair("accuracy"),
        "recall_precision": {
            "epoch": x,
            "val_recall": [e.get("val_recall") for e in epochs],
            "val_precision": [e.get("val_precision") for e in epochs],
        },
    }


def write_plots(run: RunRow, out_dir: Path, *, dpi: int | None = None) -> list[Path]:
    """Write the run's curves under ``out_dir``; returns the paths written.

    loss_curves.png; auroc_curves.png, or accuracy_curves.png for the baseline CNN (the
    metric its best epoch is chosen by); combined_metrics.png with every metric.
    """
    # The object API with the Agg canvas: no pyplot, so no global backend or figure state,
    # which keeps plotting safe from a worker thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    series = plot_series(run)
    quality = quality_metric(run)
    if dpi is None:
        dpi = int((run.config or {}).get("plots", {}).get("dpi") or DEFAULT_DPI)
    title = f"run {run.id}".strip()
    written = []

    for metric in ("loss", quality):
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        _draw_pair(fig.add_subplot(), series[metric], metric)
        fig.suptitle(title)
        written.append(_save(fig, out_dir / f"{metric}_curves.png", dpi))

    fig = Figure(figsize=(10, 7))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    _draw_pair(axes[0][0], series["loss"], "loss")
    _draw_pair(axes[0][1], series["auroc"], "auroc")
    _draw_pair(axes[1][0], series["accuracy"], "accuracy")
    ax = axes[1][1]
    rp = series["recall_precision"]
    ax.plot(rp["epoch"], _nan(rp["val_recall"]), marker="o", label="val recall")
    ax.plot(rp["epoch"], _nan(rp["val_precision"]), marker="s", label="val precision")
    _label(ax, "recall / precision at 0.5")
    fig.suptitle(title)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "combined_metrics.png", dpi))
    return written


def _nan(values: list[Any]) -> list[float]:
    # a metric undefined at some epoch (None) is a gap in the line, not a zero
    return [float("nan") if v is None else float(v) for v in values]


def _draw_pair(ax: Any, pair: dict[str, list[Any]], metric: str) -> None:
    ax.plot(pair["epoch"], _nan(pair["train"]), marker="o", label=f"train {metric}")
    ax.plot(pair["epoch"], _nan(pair["val"]), marker="s", label=f"val {metric}")
    _label(ax, metric)


def _label(ax: Any, metric: str) -> None:
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend()


def _save(fig: Any, path: Path, dpi: int) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path
