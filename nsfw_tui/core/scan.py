"""The one scoring pipeline: cache lookup, isolated decoding, batched scoring, folder scans."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config_schema import ScanConfig
from .decode_pool import Decoded, DecodePool, Decoder, Failed, decode_path
from .errors import NsfwTuiError
from .scorers import Scorer, max_over_frames
from .store import ScoreRecord, Store, path_text
from .structure import CHECK_VERSION
from .walk import WalkIssue, check_path, walk_images

# Failures that belong to the bytes (not to the moment): an unchanged file keeps them.
CONTENT_ERRORS = frozenset(
    {
        "empty",
        "unidentified",
        "truncated",
        "bomb",
        "corrupt",
        "too-large",
        "too-many-frames",
        "no-video",
    }
)


@dataclass
class ScanOptions(ScanConfig):
    """The `scan:` settings (their defaults and rules are in core/config_schema.py), and the
    decoder, which no config sets. ``ScanOptions.from_config(cfg.scan)`` builds one."""

    decoder: Decoder = decode_path  # tests swap in a faulty one


def checked_error(kind: str) -> int:
    """The check version a failure records: today's where the loader refused the content
    itself, 0 for a failure of the moment (timeout, crash, unreadable) that says nothing."""
    return CHECK_VERSION if kind in CONTENT_ERRORS else 0


def inference_threads(workers: int) -> int:
    """Threads for the model: the cores the decode workers leave free, at least one.

    On 2 cores with 2 decoders, one inference thread scored 35.5 img/s against 33.1 with
    two (benchmarks/scan_speed.py): oversubscribed cores cost more than they give.
    """
    return max(1, (os.cpu_count() or 2) - max(0, workers))


@dataclass
class ScanItem:
    path: str  # the real path (may hold surrogate escapes for non-UTF-8 names)
    sha256: str | None = None
    probability: float | None = None
    error_kind: str | None = None
    error: str | None = None
    cached: bool = False
    frame_time: float | None = None  # a video: the time of the frame that gave probability

    @property
    def display_path(self) -> str:
        return path_text(self.path)


@dataclass
class ScanResult:
    items: list[ScanItem] = field(default_factory=list)
    reused: int = 0
    scored: int = 0
    errors: int = 0
    walk_errors: list[WalkIssue] = field(default_factory=list)  # also rows in ``items``
    cancelled: bool = False
    max_in_flight: int = 0


@dataclass
class _Pending:
    decoded: Decoded
    paths: list[str]


def scan_files(
    paths: Sequence[str],
    scorer: Scorer,
    store: Store,
    options: ScanOptions | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    on_items: Callable[[list[ScanItem]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    save: bool = True,
) -> ScanResult:
    """Score ``paths`` with ``scorer``, answering from the store's cache where it can.

    A file whose path, size and mtime match the store is not re-read, unless a loader with
    an older completeness check recorded it whole (FileRow.unchecked): that one is read once
    more, and keeps its cached score only if it is still whole. A content already scored by
    this model is not re-scored. Results are written one batch per transaction,
    so a cancelled or killed scan keeps every batch it finished. With ``save`` False (a
    read-only store) the store is only read: the scores live in the result alone.
    """
    options = options or ScanOptions()
    result = ScanResult()
    total = len(paths)
    done = 0

    def emit(items: list[ScanItem]) -> None:
        nonlocal done
        result.items.extend(items)
        done += len(items)
        if on_items:
            on_items(items)
        if on_progress:
            on_progress(done, total)

    stats: dict[str, os.stat_result] = {}
    stat_failures: list[ScanItem] = []
    for p in paths:
        # Only regular files go on to be hashed and decoded: a FIFO is never opened (N2).
        st, problem = check_path(p)
        if st is not None and problem is None:
            stats[p] = st
        else:
            kind, why = problem or ("unreadable", "cannot stat")
            stat_failures.append(ScanItem(p, error_kind=kind, error=why))
    known = store.files(list(stats))
    cached_shas = {
        row.sha256
        for row in known.values()
        if row.sha256 and row.error_kind is None and not row.unchecked
    }
    cached_probs = store.predictions(scorer.id, list(cached_shas)) if cached_shas else {}
    cached_times = store.frame_times(scorer.id, list(cached_probs)) if cached_probs else {}

    to_decode: list[str] = []
    # Unchanged files found whole by an older completeness check, and the content they held:
    # read again, one that still holds it only gets its image marked checked (its row and
    # the time it was seen stay: nothing about the file is new).
    again: dict[str, str] = {}
    reused: list[ScanItem] = []
    for p, st in stats.items():
        row = known.get(p)
        unchanged = row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns
        if unchanged and row.sha256 in cached_probs and not row.unchecked:
            sha = row.sha256
            reused.append(
                ScanItem(p, sha, cached_probs[sha], cached=True, frame_time=cached_times.get(sha))
            )
        elif unchanged and row.error_kind in CONTENT_ERRORS:
            reused.append(ScanItem(p, row.sha256, None, row.error_kind, row.error, cached=True))
        else:
            to_decode.append(p)
            if unchanged and row.unchecked and row.sha256:
                again[p] = row.sha256
    result.reused = len(reused)
    result.errors = len(stat_failures) + sum(1 for r in reused if r.error_kind)
    if stat_failures and save:
        store.record_files(
            ScoreRecord(i.path, 0, 0, None, error_kind=i.error_kind, error=i.error)
            for i in stat_failures
        )
    if reused or stat_failures:
        emit(reused + stat_failures)

    batch_size = max(1, min(options.batch_size, options.queue_size))
    pool = DecodePool(
        scorer.preprocessing,
        workers=options.workers,
        queue_size=options.queue_size,
        timeout_s=options.timeout_s,
        use_draft=options.use_draft,
        max_frames=options.max_frames,
        decoder=_decoder(options),
    )
    pending: dict[str, _Pending] = {}
    held = 0  # decoded results whose pixels we still hold (pool permits)

    def flush() -> None:
        nonlocal held
        if not pending:
            return
        items, records, confirmed = _score_batch(
            list(pending.values()), scorer, store, stats, again
        )
        result.scored += sum(1 for i in items if not i.cached)
        result.reused += sum(1 for i in items if i.cached)
        if save:
            store.record_files(records)
        if confirmed and save:  # a kill in between leaves them unchecked: read once more, no harm
            store.mark_checked(confirmed, CHECK_VERSION)
        pending.clear()
        pool.release(held)
        held = 0
        emit(items)

    try:
        for res in pool.map(to_decode) if to_decode else ():
            if isinstance(res, Failed):
                pool.release()
                item = ScanItem(res.path, res.sha256, None, res.error.kind, res.error.reason)
                st = stats[res.path]
                if save:
                    store.record_files(
                        [
                            ScoreRecord(
                                path=res.path,
                                size=st.st_size,
                                mtime_ns=st.st_mtime_ns,
                                sha256=res.sha256,
                                error_kind=res.error.kind,
                                error=res.error.reason,
                                checked=checked_error(res.error.kind),
                            )
                        ]
                    )
                result.errors += 1
                emit([item])
            else:
                held += 1
                entry = pending.get(res.sha256)
                if entry is None:
                    pending[res.sha256] = _Pending(res, [res.path])
                else:
                    entry.paths.append(res.path)
                frames = sum(len(e.decoded.pixels) for e in pending.values())
                if len(pending) >= batch_size or frames >= 4 * batch_size:
                    flush()
            if should_stop and should_stop():
                result.cancelled = True
                break
        if not result.cancelled:
            flush()
    finally:
        pool.close()
        result.max_in_flight = pool.max_in_flight
    return result


def _decoder(options: ScanOptions) -> Decoder:
    """The options' decoder; the default one told how many frames of a video to sample."""
    if options.decoder is decode_path:
        return functools.partial(decode_path, video_frames=options.video_frames)
    return options.decoder


def _best_times(
    fresh: list[_Pending], probabilities: np.ndarray, counts: list[int]
) -> dict[str, float]:
    """The time of each video's highest-scoring frame (the one its probability comes from)."""
    times: dict[str, float] = {}
    start = 0
    for e, n in zip(fresh, counts, strict=True):
        if e.decoded.frame_times is not None and n:
            best = int(np.argmax(probabilities[start : start + n]))
            times[e.decoded.sha256] = float(e.decoded.frame_times[best])
        start += n
    return times


def _score_batch(
    entries: list[_Pending],
    scorer: Scorer,
    store: Store,
    stats: dict[str, os.stat_result],
    again: dict[str, str],
) -> tuple[list[ScanItem], list[ScoreRecord], set[str]]:
    """Score what the cache lacks; returns the items, the records, and the images read again
    that are whole and as recorded (``again``), to be marked checked and nothing more."""
    shas = [e.decoded.sha256 for e in entries]
    known = store.predictions(scorer.id, shas)
    fresh = [e for e in entries if e.decoded.sha256 not in known]
    probs: dict[str, float] = dict(known)
    times = store.frame_times(scorer.id, list(known)) if known else {}
    feats: dict[str, np.ndarray | None] = {}
    if fresh:
        pixels = np.stack([px for e in fresh for px in e.decoded.pixels])
        batch = scorer.score(pixels)
        counts = [len(e.decoded.pixels) for e in fresh]
        for e, p in zip(fresh, max_over_frames(batch.probabilities, counts), strict=True):
            probs[e.decoded.sha256] = p
        times |= _best_times(fresh, batch.probabilities, counts)
        if batch.features is not None:
            start = 0
            for e, n in zip(fresh, counts, strict=True):
                feats[e.decoded.sha256] = batch.features[start : start + n]
                start += n
    items: list[ScanItem] = []
    records: list[ScoreRecord] = []
    confirmed: set[str] = set()
    fresh_shas = {e.decoded.sha256 for e in fresh}
    for e in entries:
        d = e.decoded
        is_fresh = d.sha256 in fresh_shas
        for i, path in enumerate(e.paths):
            st = stats[path]
            scored_here = is_fresh and i == 0
            items.append(
                ScanItem(
                    path,
                    d.sha256,
                    probs[d.sha256],
                    cached=not scored_here,
                    frame_time=times.get(d.sha256),
                )
            )
            if again.get(path) == d.sha256 and not is_fresh:  # its cached score stands
                confirmed.add(d.sha256)
                continue
            records.append(
                ScoreRecord(
                    path=path,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=d.sha256,
                    probability=probs[d.sha256] if scored_here else None,
                    model_id=scorer.id if scored_here else None,
                    width=d.width,
                    height=d.height,
                    format=d.format,
                    n_frames=d.n_frames,
                    features=feats.get(d.sha256) if scored_here else None,
                    frame_time=times.get(d.sha256) if scored_here else None,
                    checked=CHECK_VERSION,  # this path was just read by today's loader
                )
            )
    return items, records, confirmed


def scan_folder(
    root: str | os.PathLike,
    scorer: Scorer,
    store: Store,
    options: ScanOptions | None = None,
    **kwargs,
) -> ScanResult:
    """Score the images under ``root`` that ``options.pattern`` and ``options.recursive`` pick."""
    options = options or ScanOptions()
    issues: list[WalkIssue] = []
    paths = list(
        walk_images(root, pattern=options.pattern, recursive=options.recursive, errors=issues)
    )
    result = scan_files(paths, scorer, store, options, **kwargs)
    # Every entry the walk met and could not score is a row with its reason, never silence
    # (N2): no probability, so no prediction.
    result.items.extend(ScanItem(i.path, error_kind=i.kind, error=i.reason) for i in issues)
    result.errors += len(issues)
    result.walk_errors = issues
    return result


def check_folder(path: str | os.PathLike) -> Path:
    """The folder to scan, absolute (S16), or one clear error."""
    p = Path(path)
    if not p.exists():
        raise NsfwTuiError(f"folder not found: {path_text(p)}")
    if not p.is_dir():
        raise NsfwTuiError(f"not a folder: {path_text(p)}")
    return Path(os.path.abspath(p))
