"""`scan --engine ray` (called by the scan command) and `import-scores`: past one machine."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from .options import (
    Command,
    HomeOption,
    console,
    err_console,
    handles_errors,
    open_store,
    progress_bar,
)

app = typer.Typer()


def _require_scale() -> None:
    """Refuse before any work when the scale extra is missing (the light install)."""
    import importlib.util

    from ..core.errors import MissingExtraError, extra_line

    for module in ("ray", "pyarrow"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra_line("scale", module, "--engine ray"))


def scan_on_ray(
    source: str,
    output: str | None,
    *,
    cfg,
    model: str | None,
    threshold: float | None,
    pattern: str | None,
    recursive: bool,
    address: str | None,
    workers: int | None,
    features: bool,
    home: Path | None,
) -> None:
    """The ray engine's scan: OUT as Parquet plus manifest, or a small run's CSV/JSON."""
    _require_scale()
    if output is None:
        raise NsfwTuiError(
            "--engine ray writes its results to -o OUT/ (a folder or an object store URI for "
            "Parquet) or -o FILE.csv|json for a small run"
        )
    report = output.lower().endswith((".csv", ".json"))
    if report and not Path(output).resolve().parent.is_dir():
        raise NsfwTuiError(f"the output folder {Path(output).parent} does not exist")
    if workers is not None and workers < 1:
        raise NsfwTuiError(f"--ray-workers must be at least 1, got {workers}")
    from ..models.registry import resolve_model
    from ..scale.bundle import bundle_for
    from ..scale.engine import EngineOptions, check_shared
    from ..scale.outdir import OutDir
    from ..scale.sources import plan_source
    from ..scale.worker import DecodeSettings

    plan = plan_source(source, pattern=pattern, recursive=recursive)
    h, store = open_store(home)
    with store:
        row = resolve_model(store, model)
        bundle = bundle_for(row, cache_dir=h.cache_dir)
    thr = threshold if threshold is not None else row.threshold
    options = EngineOptions(
        address=address,
        workers=workers,
        batch_size=cfg.batch_size,
        decode=DecodeSettings(cfg.timeout_s, cfg.use_draft, cfg.max_frames),
        features=features,
    )
    if report:
        with tempfile.TemporaryDirectory(prefix="nsfw-tui-ray-") as tmp:
            out = OutDir.open(os.path.join(tmp, "out"))
            check_shared(plan, None, address)  # the driver writes this one and reads it back
            summary = _run(plan, out, bundle, thr, options)
            _write_small_report(out, output, thr, home)
    else:
        out = OutDir.open(output)
        check_shared(plan, out, address)
        summary = _run(plan, out, bundle, thr, options)
    _print_summary(summary, row.id, thr, output)


def _run(plan, out, bundle, thr, options):
    from ..scale.engine import run_scan

    if not plan.count and not plan.shards:
        raise NsfwTuiError(f"no images found in {plan.source}")
    with progress_bar(transient=True) as progress:
        task = progress.add_task("Scoring on Ray", total=None)

        def show(p) -> None:
            progress.update(
                task,
                completed=p.done,
                total=p.total or None,
                description=f"Scoring on Ray, {p.rate:.1f} images/s, {p.errors} errors",
            )

        return run_scan(plan, out, bundle, thr, options, on_progress=show)


def _write_small_report(out, output: str, thr: float, home: Path | None) -> None:
    """The local scan's CSV/JSON (labels included) from OUT's rows."""
    from ..core.report import decisions, write_report
    from ..core.scan import ScanItem
    from ..scale.outdir import KEY

    manifest = out.manifest()
    items: dict[str, ScanItem] = {}
    for table in out.iter_parts(manifest):
        for r in table.select([KEY, "sha256", "probability", "error_kind", "error"]).to_pylist():
            error = r["error"] or None
            items.setdefault(
                r[KEY],
                ScanItem(
                    r[KEY],
                    r["sha256"],
                    r["probability"],
                    r["error_kind"],
                    error.split(": ", 1)[-1] if error else None,
                ),
            )
    _, store = open_store(home)
    with store:
        rows = decisions(list(items.values()), store, thr)
    write_report(rows, output)


def _print_summary(summary, model_id: str, thr: float, output: str) -> None:
    rate = summary.written / summary.elapsed_s if summary.elapsed_s else 0.0
    msg = (
        f"{summary.total} inputs with {model_id} at threshold {thr:g}: {summary.already} "
        f"already in the output, {summary.written} written this run ({summary.nsfw} NSFW, "
        f"{summary.sfw} SFW, {summary.errors} unreadable) in {summary.elapsed_s:.1f} s "
        f"({rate:.1f} images/s)"
    )
    if len(summary.nodes) > 1:
        msg += f" on {len(summary.nodes)} nodes"
    console.print(Text(msg))
    if summary.orphans:
        err_console.print(Text(f"removed {summary.orphans} unlisted part(s) of an earlier run"))
    console.print(Text(f"wrote {output}"))


@app.command("import-scores", cls=Command)
@handles_errors
def import_scores(
    out: Annotated[
        str,
        typer.Argument(metavar="OUT", help="The Parquet output of `scan --engine ray -o OUT`."),
    ],
    home: HomeOption = None,
) -> None:
    """Load a scan's Parquet output (and features) into the store, by content hash."""
    _require_scale()
    from ..scale.importer import import_scores as load

    _, store = open_store(home)
    with store, progress_bar(transient=True) as progress:
        task = progress.add_task("Importing", total=None)
        s = load(out, store, lambda done, total: progress.update(task, completed=done, total=total))
    msg = (
        f"imported {s.rows} images scored by {s.model}: {s.scored} with a probability, "
        f"{s.errors} unreadable, {s.features} with features"
    )
    console.print(Text(msg))
    if s.remote:
        err_console.print(
            Text(
                f"{s.remote} of them are remote (URIs or shard members): the review screen "
                "shows images whose bytes are on this machine"
            )
        )
