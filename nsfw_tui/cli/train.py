"""Training: `train` (a network, or an adapted head in seconds), `runs` and `plots`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from ..core.thresholds import format_threshold
from .options import (
    HomeOption,
    console,
    err_console,
    handles_errors,
    is_num,
    new_table,
    open_store,
    overrides_argument,
    print_table,
    progress_bar,
)

Overrides = overrides_argument("training.max_epochs=3 training.batch_size=16")

app = typer.Typer()

ConfigName = Annotated[
    str | None,
    typer.Option(
        "--config-name", help="config (ConvNext, default), baseline or config_baseline, adapt."
    ),
]


class _StopFlag:
    """First Ctrl+C asks the loop to stop after its batch; a second one interrupts at once."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self) -> bool:
        return self.stop

    def install(self):
        import signal

        def handler(signum, frame):
            if self.stop:
                raise KeyboardInterrupt
            self.stop = True
            err_console.print("Stopping after this batch (Ctrl+C again to interrupt)…")

        return signal.signal(signal.SIGINT, handler)


@app.command(context_settings={"allow_extra_args": False})
@handles_errors
def train(
    overrides: Overrides = None,
    config_name: ConfigName = None,
    folder: Annotated[
        Path | None, typer.Option(help="Only labelled images under this folder.")
    ] = None,
    activate: Annotated[
        bool, typer.Option("--activate", help="Make the new model the active one.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Fine-tune on the current labels and register the result as a model."""
    import signal

    from ..core.active_model import change_line
    from ..core.config import load_config, resolve_config_name
    from ..core.errors import require_extra
    from ..core.store import Store

    cfg = load_config(config_name, overrides or [])
    if folder is not None and not folder.is_dir():
        raise NsfwTuiError(f"folder not found: {folder}")
    if resolve_config_name(config_name) == "config_adapt":
        _adapt(cfg, folder=folder, activate=activate, home=home)
        return
    require_extra("train")  # before the store is touched or a progress bar drawn
    h, store = open_store(home)
    before = store.active_model()
    store.close()
    from trainer.run import train as run_training

    flag = _StopFlag()
    previous = flag.install()
    try:
        with progress_bar() as progress:
            epochs = progress.add_task("epochs", total=int(cfg.training.max_epochs))
            batches = progress.add_task("batches", total=None)

            def on_event(ev) -> None:
                if ev.kind == "start":
                    progress.console.print(Text(ev.message))
                elif ev.kind == "skipped":
                    progress.console.print(Text(ev.message, style="yellow"))
                elif ev.kind == "registering":
                    progress.console.print(Text(ev.message))
                elif ev.kind == "batch":
                    progress.update(batches, total=ev.batches, completed=ev.batch)
                elif ev.kind == "epoch":
                    progress.update(epochs, total=ev.epochs, completed=ev.epoch)
                    m = ev.metrics
                    progress.console.print(
                        Text(
                            f"epoch {ev.epoch}/{ev.epochs}  "
                            + "  ".join(
                                f"{k} {v:.4f}"
                                for k, v in m.items()
                                if is_num(v) and k != "epoch"  # the line starts with it
                            )
                        )
                    )

            result = run_training(
                h.store_path,
                h,
                cfg,
                folder=str(folder) if folder else None,
                activate=activate,
                on_event=on_event,
                should_stop=flag,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.status == "cancelled":
        err_console.print(Text(f"run {result.run_id} cancelled; no model was registered"))
        raise typer.Exit(130)
    if result.status != "done":
        raise NsfwTuiError(f"run {result.run_id} {result.status}: {result.message}")
    best = ", ".join(
        f"{k} {format_threshold(v) if k == 'threshold' else f'{v:.4f}'}"
        for k, v in result.metrics.items()
        if is_num(v)
    )
    console.print(Text(f"run {result.run_id}: best epoch {result.best_epoch}: {best}"))
    if result.warning:
        console.print(Text(f"warning: {result.warning}", style="yellow"))
    use = f"nsfw-tui models use {result.model_id}"
    if result.warning:
        how = f"(make it active anyway: {use})"
    elif activate:
        how = "(now active)"
    else:
        how = f"(make it active: {use})"
    threshold = format_threshold(result.threshold)
    console.print(Text(f"model {result.model_id} registered with threshold {threshold} {how}"))
    with Store.open(h.store_path, check=False) as store:
        console.print(Text(change_line(before, store.active_model())))


def _adapt(cfg, *, folder: Path | None, activate: bool, home: Path | None) -> None:
    """`train --config-name adapt`: a head on the cached features, fitted in seconds."""
    from ..core.active_model import change_line
    from ..core.adapt import Settings, adapt, labelled_without_features
    from ..core.config import load_config
    from ..core.scan import ScanOptions, inference_threads, scan_files
    from ..core.scorers import load_builtin

    settings = Settings.from_config(cfg)
    h, store = open_store(home)
    with store:
        only = None
        if folder is not None:
            root = folder.resolve()
            only = {
                r.sha256
                for r in store.labelled_files()
                if r.path and Path(r.path).resolve().is_relative_to(root)
            }
        todo = labelled_without_features(store, only)
        if todo:  # labelled before the built-in network saw them (import, another model)
            options = ScanOptions.from_config(load_config(None, []).scan)
            n = len(todo)
            err_console.print(
                Text(f"scoring {n} labelled image{'s' * (n != 1)} with open_nsfw first")
            )
            scan_files(todo, load_builtin(inference_threads(options.workers)), store, options)
        before = store.active_model()
        result = adapt(
            store, h.models_dir, settings, only=only, activate=True if activate else None
        )
        after = store.active_model()
    _print_adaptation(result)
    console.print(Text(change_line(before, after)))  # a better head activates unasked


def _print_adaptation(r) -> None:
    def f(v) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    n_nsfw, n_sfw = r.labels["nsfw"], r.labels["sfw"]
    table = new_table(title=f"{r.model_id}: {r.kind} head, C {r.c:g}, {n_nsfw} NSFW + {n_sfw} SFW")
    keys = ("threshold", "recall", "fpr", "precision", "auroc")
    table.add_column("model")
    for key in keys:
        table.add_column(key.upper() if key in ("fpr", "auroc") else key, justify="right")
    table.add_row(Text(f"{r.model_id} (cross-validated)"), *(f(r.cv.get(k)) for k in keys))
    table.add_row(Text("open_nsfw (built-in)"), *(f(r.builtin.get(k)) for k in keys))
    console.print(table)
    if r.skipped:
        n = r.skipped
        console.print(
            Text(f"{n} labelled image{'s have' if n != 1 else ' has'} no cached features; left out")
        )
    fl = r.flips
    console.print(
        Text(
            f"rescored {r.rescored} cached images in {r.rescore_s:.2f} s (fit {r.fit_s:.2f} s); "
            f"calls changed against {r.previous_id or 'no model'}: {fl['to_nsfw']} to NSFW, "
            f"{fl['to_sfw']} to SFW of {fl['compared']}"
        )
    )
    hint = "" if r.activated else f" (use it anyway: nsfw-tui models use {r.model_id})"
    console.print(Text(r.decision + hint))


@app.command()
@handles_errors
def runs(home: HomeOption = None) -> None:
    """List training runs with their status and best metrics."""
    _, store = open_store(home)
    with store:
        rows = store.runs()[::-1]  # the store gives the newest first; a terminal wants it last
    keys = ("val_auroc", "val_accuracy", "val_recall")

    def cell(m: dict, key: str) -> str:
        v = m.get(key)
        return f"{v:.3f}" if is_num(v) else "–"

    table = [
        (
            r.id,
            r.status or "",
            # model ids are "<architecture>-<run id>": the run column already has the rest
            (r.model_id or "").removesuffix("-" + r.id) or "–",
            str(len(r.epochs or [])),
            *(cell(r.metrics or {}, k) for k in keys),
            format_threshold(r.threshold) if is_num(r.threshold) else "–",
        )
        for r in rows
    ]
    columns = ("run", "status", "model", "epochs", "auroc", "accuracy", "recall", "threshold")
    print_table(
        columns,
        table,
        title="Training runs (newest last)",
        whole=("run", "model", "threshold"),
        right=columns[3:],
    )


@app.command()
@handles_errors
def plots(
    run_id: Annotated[str | None, typer.Argument(help="Run id (default: the latest).")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the PNGs.")] = Path(
        "plots"
    ),
    home: HomeOption = None,
) -> None:
    """Write loss, AUROC (accuracy for the baseline) and combined curves of a run as PNGs."""
    from trainer.plots import write_plots

    _, store = open_store(home)
    with store:
        r = store.run(run_id)
    if r is None:
        raise NsfwTuiError(f"no run {run_id!r}" if run_id else "no training runs yet")
    for path in write_plots(r, output):
        console.print(Text(f"wrote {path}"))
