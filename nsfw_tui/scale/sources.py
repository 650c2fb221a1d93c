"""What `scan --engine ray` reads: a folder, a glob, a manifest, tar shards or an object store URI.

A source becomes a plan: one pyarrow file system, the files to read on it (each with the key
it is reported under: an absolute local path, or a URI verbatim), the WebDataset shards whose
members are inputs of their own, and the entries that cannot be read at all (with their
reason, as rows of the output; never silence, never safe).
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass, field
from typing import Any

from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.core.images import MAX_FILE_BYTES
from nsfw_tui.core.names import path_text
from nsfw_tui.core.walk import WalkIssue, check_path, matches, walk_images

MANIFEST_SUFFIXES = (".parquet", ".csv")
SHARD_SUFFIX = ".tar"
# The column of a manifest that names the inputs, the first one present.
PATH_COLUMNS = ("uri", "path", "image_path", "url")
_GLOB = frozenset("*?[")


@dataclass(frozen=True)
class Entry:
    """One file to read: its path on the plan's file system and what it is reported as."""

    path: str
    key: str
    size: int
    mtime_ns: int


@dataclass
class Plan:
    source: str
    fs: Any  # a pyarrow.fs.FileSystem
    prefix: str  # key = prefix + path ("" for local paths, "s3://" and so on for URIs)
    files: list[Entry] = field(default_factory=list)
    shards: list[Entry] = field(default_factory=list)
    problems: list[WalkIssue] = field(default_factory=list)  # keys that are error rows
    local: bool = True  # plain local paths (not shared with other nodes)

    @property
    def count(self) -> int:
        return len(self.files) + len(self.problems)


def is_uri(text: str) -> bool:
    head, sep, _ = text.partition("://")
    return bool(sep) and head.isalnum() and len(head) > 1


def _too_large(key: str, size: int) -> WalkIssue:
    mib = 1024 * 1024
    return WalkIssue(
        key,
        "too-large",
        f"file is {size / mib:.1f} MiB, over the {MAX_FILE_BYTES / mib:.1f} MiB limit",
    )


def _add(plan: Plan, path: str, key: str, size: int, mtime_ns: int) -> None:
    if key.lower().endswith(SHARD_SUFFIX):
        plan.shards.append(Entry(path, key, size, mtime_ns))
    elif size > MAX_FILE_BYTES:  # never pulled into a worker's memory
        plan.problems.append(_too_large(key, size))
    else:
        plan.files.append(Entry(path, key, size, mtime_ns))


def _add_local(plan: Plan, path: str) -> None:
    """A local file by its absolute path; one that is missing or not readable is a row."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # N1: Parquet keys and Ray's reader take text names only
        plan.problems.append(
            WalkIssue(
                path_text(path),
                "unreadable",
                "the name is not valid UTF-8, which the Ray engine cannot read "
                "(the local scan can)",
            )
        )
        return
    st, problem = check_path(path)
    if problem is not None or st is None:
        kind, why = problem or ("unreadable", "cannot stat")
        plan.problems.append(WalkIssue(path, kind, why))
    elif not os.access(path, os.R_OK):  # the reader would fail its whole task on it
        plan.problems.append(WalkIssue(path, "unreadable", "cannot read file: permission denied"))
    else:
        _add(plan, path, path, st.st_size, st.st_mtime_ns)


def plan_source(source: str, *, pattern: str | None = None, recursive: bool = True) -> Plan:
    """The plan for ``source``, or one clear error when it names nothing that can be read."""
    if is_uri(source) and not source.startswith("file://"):
        return _plan_uri(source, pattern, recursive)
    if source.startswith("file://"):
        plan = _plan_uri(source, pattern, recursive)
        plan.local = False  # given as a URI: the person says every node sees this path
        return plan
    import pyarrow.fs as pafs

    plan = Plan(os.path.abspath(source), pafs.LocalFileSystem(), "")
    if any(c in _GLOB for c in source) and not os.path.lexists(source):
        names = sorted(glob.glob(source, recursive=True))
        if not names:
            raise NsfwTuiError(f"nothing matches {source}")
        for name in names:
            if not os.path.isdir(name):
                _add_local(plan, os.path.abspath(name))
        return plan
    if not os.path.lexists(source):
        raise NsfwTuiError(f"source not found: {source}")
    path = os.path.abspath(source)
    if os.path.isdir(path):
        issues: list[WalkIssue] = []
        for p in walk_images(path, pattern=pattern, recursive=recursive, errors=issues):
            _add_local(plan, p)
        if pattern is None:  # shards beside the images are inputs too
            for p in walk_images(path, pattern="*" + SHARD_SUFFIX, recursive=recursive):
                _add_local(plan, p)
        plan.problems.extend(issues)
        return plan
    if path.lower().endswith(MANIFEST_SUFFIXES):
        return _plan_manifest(path, _read_manifest_local(path), os.path.dirname(path))
    _add_local(plan, path)
    return plan


def _plan_uri(source: str, pattern: str | None, recursive: bool) -> Plan:
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(source)
    except (pafs.ArrowInvalid, OSError, ValueError) as exc:  # unknown scheme, no credentials
        raise NsfwTuiError(f"cannot open {source}: {exc}") from None
    scheme = source.split("://", 1)[0]
    prefix = "file://" if scheme == "file" else f"{scheme}://"
    plan = Plan(source, fs, prefix, local=False)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise NsfwTuiError(f"source not found: {source}")
    if info.type == pafs.FileType.Directory:
        selector = pafs.FileSelector(path, recursive=recursive)
        for f in sorted(fs.get_file_info(selector), key=lambda f: f.path):
            name = f.base_name
            if f.type != pafs.FileType.File or name.startswith("."):
                continue
            if "/." in f.path[len(path) :]:
                continue  # inside a hidden folder, as the local walk skips them
            if matches(name, pattern) or (pattern is None and name.lower().endswith(".tar")):
                _add(plan, f.path, prefix + f.path, f.size or 0, f.mtime_ns or 0)
        return plan
    if path.lower().endswith(MANIFEST_SUFFIXES):
        with fs.open_input_file(path) as fh:
            names = _read_manifest_bytes(path, fh.read())
        return _plan_manifest(source, names, prefix + path.rsplit("/", 1)[0])
    _add(plan, path, prefix + path, info.size or 0, info.mtime_ns or 0)
    return plan


def _read_manifest_local(path: str) -> list[str]:
    try:
        with open(path, "rb") as fh:
            return _read_manifest_bytes(path, fh.read())
    except OSError as exc:
        raise NsfwTuiError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None


def _read_manifest_bytes(name: str, data: bytes) -> list[str]:
    """The input names a Parquet or CSV manifest lists, from its path/URI column."""
    if name.lower().endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            raise NsfwTuiError(f"the manifest {name} is not readable Parquet: {exc}") from None
        column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
        if column is None:
            raise NsfwTuiError(_no_column(name, table.column_names))
        return [str(v) for v in table.column(column).to_pylist() if v]
    text = data.decode("utf-8-sig", errors="replace").splitlines()
    rows = list(csv.DictReader(text))
    header = list(rows[0]) if rows else next(csv.reader(text[:1]), [])
    column = next((c for c in PATH_COLUMNS if c in header), None)
    if column is None:
        raise NsfwTuiError(_no_column(name, header))
    return [r[column] for r in rows if r.get(column)]


def _no_column(name: str, columns: list[str]) -> str:
    return (
        f"the manifest {name} has no column named {' or '.join(PATH_COLUMNS)} "
        f"(its columns: {', '.join(columns) or 'none'})"
    )


def _plan_manifest(source: str, names: list[str], base: str) -> Plan:
    """Every name of a manifest: URIs of one file system, or local paths (relative to it)."""
    import pyarrow.fs as pafs

    uris = [n for n in names if is_uri(n)]
    if uris and len(uris) != len(names):
        raise NsfwTuiError(f"the manifest {source} mixes URIs and local paths; use one kind")
    if not uris:
        if is_uri(base) and not base.startswith("file://"):
            raise NsfwTuiError(
                f"the manifest {source} lists names without a scheme; a manifest in an object "
                f"store must list full URIs (such as {base}/{names[0] if names else 'a.jpg'})"
            )
        plan = Plan(source, pafs.LocalFileSystem(), "")
        local_base = base[len("file://") :] if base.startswith("file://") else base
        plan.local = not base.startswith("file://")
        for n in dict.fromkeys(names):  # a name listed twice is one input
            _add_local(plan, os.path.abspath(os.path.join(local_base, n)))
        return plan
    schemes = {u.split("://", 1)[0] for u in uris}
    if len(schemes) > 1:
        raise NsfwTuiError(f"the manifest {source} mixes URI schemes: {', '.join(sorted(schemes))}")
    try:
        fs, _ = pafs.FileSystem.from_uri(uris[0])
    except (pafs.ArrowInvalid, OSError, ValueError) as exc:
        raise NsfwTuiError(f"cannot open {uris[0]}: {exc}") from None
    scheme = schemes.pop()
    prefix = f"{scheme}://"
    plan = Plan(source, fs, prefix, local=False)
    wanted = list(dict.fromkeys(uris))
    paths = [u[len(prefix) :] for u in wanted]
    for key, path, info in zip(wanted, paths, fs.get_file_info(paths), strict=True):
        if info.type == pafs.FileType.File:
            _add(plan, path, key, info.size or 0, info.mtime_ns or 0)
        elif info.type == pafs.FileType.NotFound:
            plan.problems.append(WalkIssue(key, "missing", "file not found"))
        else:
            plan.problems.append(WalkIssue(key, "unreadable", "not a regular file"))
    return plan
