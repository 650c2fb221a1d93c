"""Importing labels from folders, taking them off, and exporting them as CSV."""

from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .atomic import atomic_write
from .errors import ImageError, NsfwTuiError
from .images import check_structure, hash_file, read_bytes
from .scan import CONTENT_ERRORS
from .store import FileRow, ScoreRecord, Store, path_text
from .structure import CHECK_VERSION
from .walk import WalkIssue, walk_images


@dataclass
class ImportReport:
    labelled: dict[str, int] = field(default_factory=lambda: {"nsfw": 0, "sfw": 0})
    unchanged: int = 0
    kept_human: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of each folder that could not be listed and each file not labelled:
    unreadable, not an image, or not a whole one (P12)."""


def plan_import(path: str | os.PathLike, label: str | None) -> list[tuple[Path, str]]:
    """Which folders get which label: PATH itself, or ROOT/nsfw and ROOT/sfw (absolute)."""
    root = Path(os.path.abspath(path))
    if not root.is_dir():
        raise NsfwTuiError(f"folder not found: {path_text(root)}")
    if label is not None:
        return [(root, label)]
    subs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    plan = [(subs[name], name) for name in ("nsfw", "sfw") if name in subs]
    if not plan:
        raise NsfwTuiError(
            f"{path_text(root)} has no nsfw/ or sfw/ subfolder; "
            "give --label nsfw|sfw to label the whole folder"
        )
    return plan


@dataclass
class _Checked:
    path: str
    stat: os.stat_result | None
    sha256: str | None
    error: ImageError | None = None
    cached: bool = False  # the store's verdict on the unchanged file was reused
    confirmed: bool = False  # read again (an older check found it whole): whole, as recorded


def _check(path: str, known: dict[str, FileRow]) -> _Checked:
    """Hash the file and check that it is a whole image (P12), or reuse the store's verdict."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return _Checked(path, None, None, ImageError("unreadable", exc.strerror or str(exc)))
    row = known.get(path)
    if row is not None and (row.size, row.mtime_ns) != (st.st_size, st.st_mtime_ns):
        row = None  # changed since: the store's verdict is about other bytes
    if row is not None:
        # unchanged since a scan decoded it, or an import checked it: not read again, unless
        # it was found whole by a loader with an older completeness check (P12)
        if row.error_kind in CONTENT_ERRORS:
            error = ImageError(row.error_kind, row.error or row.error_kind)
            return _Checked(path, st, row.sha256, error, cached=True)
        if row.error_kind is None and row.sha256 and not row.unchecked:
            return _Checked(path, st, row.sha256, cached=True)
    try:
        data = read_bytes(path)
    except ImageError as exc:
        return _Checked(path, st, None, exc)
    sha = hashlib.sha256(data).hexdigest()
    try:
        check_structure(data)
    except ImageError as exc:
        return _Checked(path, st, sha, exc)
    # found whole again, as an older check recorded it: only that it was checked is new
    again = row is not None and row.unchecked and row.sha256 == sha
    return _Checked(path, st, sha, confirmed=again)


def _record(checked: _Checked) -> ScoreRecord | None:
    """What the store learns from a fresh check: the file's hash, or the content's fault."""
    c, st = checked, checked.stat
    if c.cached or c.confirmed or st is None or c.sha256 is None:
        return None
    # check_structure is the loader's own completeness check: its verdict is today's
    if c.error is None:
        return ScoreRecord(c.path, st.st_size, st.st_mtime_ns, c.sha256, checked=CHECK_VERSION)
    return ScoreRecord(
        c.path,
        st.st_size,
        st.st_mtime_ns,
        c.sha256,
        error_kind=c.error.kind,
        error=c.error.reason,
        checked=CHECK_VERSION,
    )


def import_folders(store: Store, plan: list[tuple[Path, str]]) -> ImportReport:
    """Label every whole image under each folder; files that are not are skipped with why."""
    report = ImportReport()
    for folder, label in plan:
        issues: list[WalkIssue] = []
        paths = list(walk_images(folder, errors=issues))
        report.errors.extend((path_text(i.path), f"{i.kind}: {i.reason}") for i in issues)
        known = store.files(paths)
        # hashlib and zlib release the GIL, so threads overlap reading, hashing and checking
        with ThreadPoolExecutor(max_workers=4) as pool:
            checked = list(pool.map(lambda p, k=known: _check(p, k), paths))
        store.record_files(r for c in checked if (r := _record(c)) is not None)
        store.mark_checked({c.sha256 for c in checked if c.confirmed and c.sha256}, CHECK_VERSION)
        shas = []
        for c in checked:
            if c.error is not None:
                report.errors.append((path_text(c.path), f"{c.error.kind}: {c.error.reason}"))
            else:
                shas.append(c.sha256)
        current = store.current_labels(shas)
        to_label = []
        for sha in dict.fromkeys(shas):
            ev = current.get(sha)
            if ev is not None and ev.label == label:
                report.unchanged += 1
            elif ev is not None and ev.source in ("human", "undo"):
                report.kept_human += 1  # a person's call outranks an import
            else:
                to_label.append(sha)
        store.set_labels(to_label, label, source="import")
        report.labelled[label] += len(to_label)
    return report


@dataclass
class RemoveReport:
    removed: int = 0
    had_none: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of each folder that could not be listed and each file not read."""


def images_at(store: Store, paths: list[str | os.PathLike]) -> tuple[list[str], list]:
    """The content hashes of the files at PATHs and of every image under the folders among
    them, with (path, reason) for each that could not be read. A missing PATH is an error."""
    found = [os.path.abspath(p) for p in paths]
    for given, path in zip(paths, found, strict=True):
        if not os.path.exists(path):
            raise NsfwTuiError(f"not found: {path_text(given)}")
    errors: list[tuple[str, str]] = []
    files: list[str] = []
    for path in found:
        if os.path.isdir(path):
            issues: list[WalkIssue] = []
            files.extend(walk_images(path, errors=issues))
            errors.extend((path_text(i.path), f"{i.kind}: {i.reason}") for i in issues)
        else:
            files.append(path)
    known = store.files(files)
    shas = []
    for path in dict.fromkeys(files):
        row = known.get(path)
        try:
            st = os.stat(path)
            if row and row.sha256 and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns):
                shas.append(row.sha256)
            else:
                shas.append(hash_file(path)[0])
        except ImageError as exc:
            errors.append((path_text(path), f"{exc.kind}: {exc.reason}"))
        except OSError as exc:
            errors.append((path_text(path), f"unreadable: {exc.strerror or exc}"))
    return shas, errors


def remove_labels(store: Store, paths: list[str | os.PathLike]) -> RemoveReport:
    """Clear the label of each image at PATHs with one batch of "no label" events (history
    keeps every earlier event, and `labels undo` puts them back)."""
    shas, errors = images_at(store, paths)
    shas = list(dict.fromkeys(shas))
    labelled = store.current_labels(shas)
    store.set_labels(shas, None, source="human")
    return RemoveReport(len(labelled), len(shas) - len(labelled), errors)


def export_csv(rows: list[dict], output: str | os.PathLike) -> None:
    output = Path(output)
    try:
        with atomic_write(output, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "sha256", "label", "source", "time"])
            for r in rows:
                when = datetime.fromtimestamp(r.created_at, UTC).isoformat(timespec="seconds")
                shown = path_text(r.path) if r.path else ""
                writer.writerow([shown, r.sha256, r.label, r.source, when])
    except OSError as exc:
        raise NsfwTuiError(f"cannot write {output}: {exc.strerror or exc}") from exc
