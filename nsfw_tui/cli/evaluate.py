"""Checking a model on the labelled images: `eval`, and `calibrate` its threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from ..core.thresholds import format_threshold
from .options import (
    HomeOption,
    ModelOption,
    console,
    handles_errors,
    open_store,
    print_table,
    progress_bar,
)

app = typer.Typer()


def _labelled_scores(store, model: str | None, folder: Path | None, split: str | None = "all"):
    from ..core.config import load_config
    from ..core.evaluate import eval_scope, labelled_scores
    from ..core.scan import ScanOptions, inference_threads
    from ..models.registry import load_scorer, resolve_model

    if folder is not None and not folder.is_dir():
        raise NsfwTuiError(f"folder not found: {folder}")
    row = resolve_model(store, model)
    scope = eval_scope(store, row, split)
    options = ScanOptions.from_config(load_config(None, []).scan)
    cache = store.path.parent / "cache"  # the home's cache, where the built-in graph is kept
    scorer = load_scorer(row, threads=inference_threads(options.workers), cache_dir=cache)
    with progress_bar(transient=True) as progress:
        task = progress.add_task("Scoring labelled images", total=None)
        data = labelled_scores(
            store,
            scorer,
            folder=folder,
            only=scope.only,
            known=scope.known,
            options=options,
            on_progress=lambda d, t: progress.update(task, completed=d, total=t),
        )
    return row, scope, data


def _print_evaluation(ev, scope, data) -> None:
    from ..core.evaluate import scope_line

    c = ev.confusion
    title = (
        f"{ev.model_id} at threshold {format_threshold(ev.threshold)} "
        f"on {ev.n} labelled image{'s' * (ev.n != 1)}"
    )
    if not console.is_terminal:  # piped: the title as a line, the matrix tab-separated
        console.print(Text(title))
    print_table(
        ["label \\ call", "NSFW", "SFW"],
        [["NSFW", c.tp, c.fn], ["SFW", c.fp, c.tn]],
        title=title,
        right=("NSFW", "SFW"),
    )

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    console.print(
        Text(
            f"recall {f(c.recall)}  precision {f(c.precision)}  accuracy {f(c.accuracy)}  "
            f"false alarm rate {f(c.fpr)}  AUROC {f(ev.auroc)}"
        )
    )
    console.print(Text(scope_line(scope, data)))
    if ev.skipped:
        n = ev.skipped
        console.print(
            Text(
                f"{n} labelled image{'s are' if n != 1 else ' is'} no longer on disk or unreadable"
            )
        )


@app.command("eval")
@handles_errors
def eval_(
    model: ModelOption = None,
    folder: Annotated[
        Path | None, typer.Option(help="Only labelled images under this folder.")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="val: only images the model was not fitted on (a trained model's validation "
            "images, an adapted head's out-of-fold scores; the default where known); all: "
            "every labelled image, training images included.",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Confusion matrix, recall, precision, accuracy and AUROC on the labelled images."""
    from ..core.evaluate import evaluate

    _, store = open_store(home)
    with store:
        row, scope, data = _labelled_scores(store, model, folder, split)
        _print_evaluation(evaluate(data, row.id, row.threshold), scope, data)


@app.command()
@handles_errors
def calibrate(
    model: ModelOption = None,
    target_recall: Annotated[
        float | None,
        typer.Option(help="Recall on NSFW to reach (default: metrics.target_recall)."),
    ] = None,
    folder: Annotated[
        Path | None, typer.Option(help="Only labelled images under this folder.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Set a model's threshold from the labelled images: the highest that reaches the recall."""
    from ..core.active_model import change_line
    from ..core.config import load_config
    from ..core.evaluate import calibrated_threshold, evaluate
    from ..core.thresholds import registered_threshold

    if target_recall is None:
        target_recall = float(load_config(None, []).metrics.target_recall)
    _, store = open_store(home)
    with store:
        row, scope, data = _labelled_scores(store, model, folder)
        threshold = calibrated_threshold(data, target_recall)
        before = store.active_model()
        store.set_threshold(row.id, threshold)
        after = store.active_model()
        original = registered_threshold(store, row)
        old, new = format_threshold(row.threshold), format_threshold(threshold)
        console.print(Text(f"{row.id}: threshold {old} -> {new} (target recall {target_recall:g})"))
        _print_evaluation(evaluate(data, row.id, threshold), scope, data)
    console.print(Text(change_line(before, after)))
    back = f"nsfw-tui models threshold {row.id}"
    if original is not None:
        console.print(
            Text(f"back to its own threshold ({format_threshold(original)}): {back} --reset")
        )
    if original is None or original != row.threshold:
        console.print(Text(f"back to the one before ({old}): {back} {row.threshold!r}"))
