"""`scan --engine ray`: a plan read by Ray Data, scored by actors, written as listed Parquet parts.

Ray reads the bytes (``read_binary_files`` with paths; never ``read_images``, which decodes
with PIL past the allowlist and the bomb checks); a pool of ``ScoreWorker`` actors decodes
and scores them; the rows stream back here, where each part is written whole and then listed
in OUT's manifest. Rows already in OUT are dropped on the way (a task Ray retried, or a
rerun), so every input is in OUT exactly once, whatever was killed or interrupted.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nsfw_tui.core.decision import decide
from nsfw_tui.core.errors import NsfwTuiError

from .bundle import ModelBundle
from .outdir import KEY, Manifest, OutDir, new_run_id
from .sources import Plan
from .worker import COLUMNS, DecodeSettings, ScoreWorker, expand_shards

# Internal columns the output does not keep.
_DROP = ("shard", "shard_total")
# Read tasks (blocks) at most: a block of one batch keeps the stream moving and a retried
# task cheap, until the number of blocks itself would cost the driver more.
_MAX_BLOCKS = 20_000


@dataclass
class EngineOptions:
    address: str | None = None  # None: RAY_ADDRESS, else a local Ray with this machine's cores
    workers: int | None = None  # scoring actors; None: one per CPU of the cluster
    batch_size: int = 16
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    features: bool = False
    part_rows: int = 4096
    part_seconds: float = 10.0  # a kill -9 of the command loses at most this much scoring
    # Only for a local Ray this command starts (tests and laptops).
    num_cpus: int | None = None
    object_store_bytes: int | None = None


@dataclass
class Progress:
    done: int
    total: int
    errors: int
    rate: float  # images/s over this run


@dataclass
class RunSummary:
    total: int = 0  # inputs of the source
    already: int = 0  # in OUT before this run
    written: int = 0  # rows this run added
    errors: int = 0  # of those, rows with no probability
    nsfw: int = 0
    sfw: int = 0
    parts: int = 0
    orphans: int = 0
    cancelled: bool = False
    elapsed_s: float = 0.0
    nodes: Counter = field(default_factory=Counter)  # rows scored per Ray node


def check_shared(plan: Plan, out: OutDir | None, address: str | None) -> None:
    """On a cluster every node reads SOURCE and the driver's OUT must outlive any node: plain
    local paths are refused (each node would see its own disk). ``out`` None: a small run's
    FILE.csv|json, written from the driver's own temporary folder."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        return
    if plan.local:
        raise NsfwTuiError(
            f"on a cluster (--address) every node reads the source, and {plan.source} is a "
            "local path: give an object store URI (s3://..., gs://...) or a shared file "
            "system as file:///PATH"
        )
    if out is not None and out.local:
        raise NsfwTuiError(
            f"on a cluster (--address) the output must be shared, and {out.display} is a "
            "local path: give an object store URI or a shared file system as file:///PATH"
        )


def _reason(exc: BaseException) -> str:
    """The first line of what failed in a Ray task (its error wraps the task's own)."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:500]


def _quiet_ray() -> None:
    """Ray and Ray Data log every execution at INFO: the command draws its own progress."""
    names = [
        "ray",
        "ray.data",
        *(n for n in logging.root.manager.loggerDict if n.startswith("ray")),
    ]
    for name in names:
        # CRITICAL: a failed run is told once, as this command's own line
        logging.getLogger(name).setLevel(logging.CRITICAL)


def ensure_ray(options: EngineOptions) -> bool:
    """Join or start Ray; True when this call started it (and must shut it down)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _quiet_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    address = options.address or os.environ.get("RAY_ADDRESS")
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = options.num_cpus or os.cpu_count() or 1
        if options.object_store_bytes:
            kwargs["object_store_memory"] = options.object_store_bytes
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise NsfwTuiError(f"cannot start or join {where}: {exc}") from None
    _quiet_ray()
    return True


def _data_context() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.execution_options.verbose_progress = False
    _quiet_ray()


class _Writer:
    """Turns rows from the stream into listed parts; drops rows whose key OUT already has."""

    def __init__(
        self,
        out: OutDir,
        manifest: Manifest,
        done: set[str],
        mtimes: dict[str, int],
        summary: RunSummary,
        options: EngineOptions,
    ) -> None:
        self.out = out
        self.manifest = manifest
        self.done = done
        self.mtimes = mtimes
        self.summary = summary
        self.options = options
        self.run = new_run_id()
        self.seq = 0
        self.buffer: list[Any] = []
        self.buffered = 0
        self.last_flush = time.monotonic()
        # a shard's distinct members back (a task Ray retried sends some twice)
        self.shard_seen: dict[str, set[str]] = {}
        self.shard_total: dict[str, int] = {}

    def add(self, table: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        keys = table.column(KEY).to_pylist()
        for key, shard, total in zip(
            keys,
            table.column("shard").to_pylist(),
            table.column("shard_total").to_pylist(),
            strict=True,
        ):
            if shard:
                self.shard_seen.setdefault(shard, set()).add(key)
                self.shard_total[shard] = total
        keep = []
        for k in keys:
            fresh = k not in self.done
            keep.append(fresh)
            if fresh:
                self.done.add(k)
        if not all(keep):
            table = table.filter(pa.array(keep))
        if table.num_rows:
            self.buffer.append(table)
            self.buffered += table.num_rows
            s = self.summary
            s.written += table.num_rows
            s.errors += table.num_rows - pc.sum(pc.is_valid(table.column("probability"))).as_py()
            preds = table.column("prediction")
            s.nsfw += pc.sum(pc.equal(preds, 1)).as_py() or 0
            s.sfw += pc.sum(pc.equal(preds, 0)).as_py() or 0
            for node in table.column("node").to_pylist():
                s.nodes[node] += 1
        due = time.monotonic() - self.last_flush >= self.options.part_seconds
        if self.buffered >= self.options.part_rows or (due and self.buffered):
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        listed = set(self.manifest.shards)
        new_shards = [
            s
            for s, seen in self.shard_seen.items()
            if len(seen) >= self.shard_total.get(s, 1) and s not in listed
        ]
        if not self.buffer and not new_shards:
            return
        if self.buffer:
            table = pa.concat_tables(self.buffer).drop_columns(list(_DROP))
            keys = table.column(KEY).to_pylist()
            table = table.append_column(
                "mtime_ns", pa.array([self.mtimes.get(k) for k in keys], type=pa.int64())
            )
            n = table.num_rows
            table = table.append_column("model", pa.array([self.manifest.model] * n, pa.string()))
            table = table.append_column(
                "threshold", pa.array([self.manifest.threshold] * n, pa.float64())
            )
            if not self.manifest.features:
                table = table.drop_columns(["features"])
            name = self.out.write_part(table, self.run, self.seq)
            self.seq += 1
            self.summary.parts += 1
            self.manifest.parts.append({"file": name, "rows": n})
        self.manifest.shards.extend(new_shards)
        self.out.write_manifest(self.manifest)  # only now do the rows count
        self.buffer.clear()
        self.buffered = 0
        self.last_flush = time.monotonic()


def error_rows(keys_errors: list[tuple[str, str, str]], threshold: float) -> Any:
    """Rows for inputs that never reach a worker: (key, kind, reason), no probability."""
    from .worker import _columns

    out: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for key, kind, reason in keys_errors:
        decision = decide(None, threshold)
        out["image_path"].append(key)
        out["probability"].append(None)
        out["prediction"].append(decision.prediction)
        out["class_name"].append(decision.class_name)
        out["error"].append(f"{kind}: {reason}")
        out["error_kind"].append(kind)
        for name in ("sha256", "size", "width", "height", "format", "n_frames", "features"):
            out[name].append(None)
        out["node"].append("")
    n = len(keys_errors)
    out["shard"] = [""] * n
    out["shard_total"] = [0] * n
    return _columns(out)


def open_run(
    plan: Plan, out: OutDir, bundle: ModelBundle, threshold: float, features: bool
) -> tuple[Manifest, set[str], int]:
    """OUT's manifest for this run (new, or the one being resumed), the keys it already
    has, and how many orphan parts were deleted. A different model or source is refused."""
    out.prepare()
    manifest = out.manifest()
    if manifest is not None:
        if manifest.model != bundle.model_id:
            raise NsfwTuiError(
                f"{out.display} holds scores by model {manifest.model!r}, not "
                f"{bundle.model_id!r}: give another output folder, or --model {manifest.model}"
            )
        if manifest.source != plan.source:
            raise NsfwTuiError(
                f"{out.display} holds scores of {manifest.source}, not {plan.source}: "
                "give another output folder"
            )
        if abs(manifest.threshold - threshold) > 1e-12:
            raise NsfwTuiError(
                f"{out.display} was scored at threshold {manifest.threshold:g}, not "
                f"{threshold:g}: resume with --threshold {manifest.threshold:g}, or give "
                "another output folder"
            )
        if manifest.features != features:
            flag = "with --features" if manifest.features else "without --features"
            raise NsfwTuiError(f"{out.display} was written {flag}: resume the same way")
    orphans = len(out.remove_orphans(manifest))
    done = out.done_keys(manifest)
    if manifest is None:
        manifest = Manifest(bundle.model_id, plan.source, threshold, features)
        out.write_manifest(manifest)
    return manifest, done, orphans


def run_scan(
    plan: Plan,
    out: OutDir,
    bundle: ModelBundle,
    threshold: float,
    options: EngineOptions,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunSummary:
    """Score what of ``plan`` OUT lacks; see the module docstring for the guarantees."""
    started = time.monotonic()
    features = options.features and bundle.has_features
    manifest, done, orphans = open_run(plan, out, bundle, threshold, features)
    summary = RunSummary(total=plan.count, orphans=orphans)
    summary.already = sum(1 for e in plan.files if e.key in done) + sum(
        1 for p in plan.problems if p.path in done
    )
    files = [e for e in plan.files if e.key not in done]
    listed = set(manifest.shards)
    shards = [e for e in plan.shards if e.key not in listed]
    mtimes = {e.key: e.mtime_ns for e in files}
    writer = _Writer(out, manifest, done, mtimes, summary, options)
    todo = len(files) + sum(1 for p in plan.problems if p.path not in done)

    def report() -> None:
        if on_progress:
            rate = summary.written / max(1e-9, time.monotonic() - started)
            on_progress(Progress(summary.written, todo, summary.errors, rate))

    problems = [(p.path, p.kind, p.reason) for p in plan.problems if p.path not in done]
    if problems:
        writer.add(error_rows(problems, manifest.threshold))
        writer.flush()
        report()
    started_ray = False
    try:
        if files or shards:
            started_ray = ensure_ray(options)
            _data_context()
            for ds in _datasets(plan, files, shards, bundle, manifest, options):
                for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    writer.add(table)
                    report()
                    if should_stop and should_stop():
                        summary.cancelled = True
                        break
                if summary.cancelled:
                    break
        if not summary.cancelled:
            lost = [(e.key, "missing", "file not found") for e in files if e.key not in done]
            if lost:  # deleted between the listing and the read: the reader skips them
                writer.add(error_rows(lost, manifest.threshold))
    except KeyboardInterrupt:
        summary.cancelled = True
        raise
    except NsfwTuiError:
        raise
    except Exception as exc:  # Ray gave up (a read that kept failing, a cluster gone)
        summary.cancelled = True
        raise NsfwTuiError(
            f"the Ray run stopped: {_reason(exc)}; the rows it finished are kept in "
            f"{out.display}, and the same command resumes from there"
        ) from exc
    finally:
        writer.flush()  # what came back before a stop is kept, listed
        summary.elapsed_s = time.monotonic() - started
        if started_ray:
            import ray

            ray.shutdown()
    return summary


def _datasets(
    plan: Plan,
    files: list,
    shards: list,
    bundle: ModelBundle,
    manifest: Manifest,
    options: EngineOptions,
) -> list[Any]:
    import ray
    import ray.data

    workers = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    read_tasks = max(2, workers)
    # The model travels once through the object store, by reference: each actor (and a
    # restarted one) fetches it, and the driver keeps it alive for the whole run.
    args = ([ray.put(bundle)], options.decode, plan.prefix, manifest.features, manifest.threshold)
    out = []
    for group, is_shards in ((files, False), (shards, True)):
        if not group:
            continue
        paths = [e.path for e in group]
        per_block = max(options.batch_size, -(-len(paths) // _MAX_BLOCKS))
        blocks = -(-len(paths) // per_block)
        readers = min(read_tasks, blocks)
        ds = ray.data.read_binary_files(
            paths,
            include_paths=True,
            filesystem=plan.fs,
            ignore_missing_paths=True,
            override_num_blocks=blocks,
            # Reading is I/O: it never waits for a CPU a scoring actor holds; the cap keeps
            # Ray from starting a process per block (tasks of 0 CPUs are otherwise unbounded).
            num_cpus=0,
            concurrency=readers,
        )
        if is_shards:
            ds = ds.map_batches(
                expand_shards,
                fn_kwargs={"prefix": plan.prefix},
                batch_size=1,
                num_cpus=0,
                concurrency=readers,
            )
        ds = ds.map_batches(
            ScoreWorker,
            fn_constructor_args=args,
            batch_size=options.batch_size,
            batch_format="numpy",
            # A short backlog per actor: decoded images never pile up, and bytes wait in
            # Ray's object store under its own backpressure.
            compute=ray.data.ActorPoolStrategy(
                size=max(1, min(workers, blocks)), max_tasks_in_flight_per_actor=2
            ),
            num_cpus=1,  # Ray Data restarts a lost actor and retries its tasks by default
        )
        out.append(ds)
    return out
