"""The curated set as an image folder (DIR/nsfw, DIR/sfw), kept in sync with the labels.

A manifest in DIR remembers each file the export wrote (its image and label, size and
mtime). An export into the same DIR takes out the files it wrote whose image is no longer
labelled so, and leaves everything else in DIR alone: a file it did not write, or one that
was changed since, is reported and never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write
from .errors import ImageError, NsfwTuiError
from .images import hash_file
from .store_rows import LabelledFile

MANIFEST = ".nsfw-tui-imagefolder.json"
LABELS = ("nsfw", "sfw")


@dataclass
class ImagefolderReport:
    counts: dict[str, int] = field(
        default_factory=lambda: {"nsfw": 0, "sfw": 0, "linked": 0, "copied": 0, "missing": 0}
    )
    taken_out: list[str] = field(default_factory=list)
    """Files this export wrote before, removed: their image's label changed or was removed."""
    foreign: list[str] = field(default_factory=list)
    """Files in DIR the export did not write (or that changed since): left alone."""


def export_imagefolder(rows: list[LabelledFile], dest: str | os.PathLike) -> ImagefolderReport:
    """DIR/nsfw and DIR/sfw, hard-linked where the file system allows, else copied."""
    dest = Path(dest)
    try:
        return _export(rows, dest)
    except OSError as exc:
        where = exc.filename or dest
        raise NsfwTuiError(
            f"cannot write the image folder at {where}: {exc.strerror or exc}"
        ) from exc


def _export(rows: list[LabelledFile], dest: Path) -> ImagefolderReport:
    rep = ImagefolderReport()
    for label in LABELS:
        (dest / label).mkdir(parents=True, exist_ok=True)
    wanted = {r.sha256: r.label for r in rows}
    kept: dict[str, dict] = {}
    present: set[str] = set()  # images already in DIR under their current label
    for rel, entry in _read_manifest(dest).items():
        state = _state(dest / rel, entry)
        if state != "ours":
            continue  # gone, or changed by someone else: no longer ours to remove
        sha, label = entry["sha256"], entry["label"]
        if wanted.get(sha) == label and sha not in present:
            kept[rel] = entry
            present.add(sha)
        else:
            os.unlink(dest / rel)
            rep.taken_out.append(rel)
    for r in rows:
        if r.sha256 in present:
            rep.counts[r.label] += 1
            continue
        src = r.path
        if not src or not os.path.isfile(src):
            rep.counts["missing"] += 1
            continue
        rel, how = _place(src, r.sha256, dest, r.label)
        if how != "there":
            rep.counts[how] += 1
        st = os.stat(dest / rel)
        kept[rel] = {
            "sha256": r.sha256,
            "label": r.label,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
        }
        present.add(r.sha256)
        rep.counts[r.label] += 1
    with atomic_write(dest / MANIFEST, "w") as fh:
        json.dump({"version": 1, "files": kept}, fh, indent=1, sort_keys=True)
    rep.foreign = _others(dest, set(kept))
    rep.taken_out.sort()
    return rep


def _place(src: str, sha: str, dest: Path, label: str) -> tuple[str, str]:
    """Link or copy SRC into DEST/LABEL; returns its path in DEST and "linked", "copied",
    or "there" (the same image was already at that name: it is taken as this export's)."""
    name = Path(src).name
    for candidate in (name, f"{sha[:12]}_{name}", f"{sha}_{name}"):
        target = dest / label / candidate
        rel = f"{label}/{candidate}"
        if target.exists() or target.is_symlink():
            if _same_image(target, src, sha):
                return rel, "there"
            continue
        try:
            os.link(src, target)
            return rel, "linked"
        except OSError:
            shutil.copy2(src, target)
            return rel, "copied"
    raise NsfwTuiError(f"no free name for {src} in {dest / label}")


def _same_image(target: Path, src: str, sha: str) -> bool:
    try:
        if os.path.samefile(target, src):
            return True
        return target.is_file() and not target.is_symlink() and hash_file(target)[0] == sha
    except (OSError, ImageError):
        return False


def _state(path: Path, entry: dict) -> str:
    """ "gone", "ours" (what the export wrote, unchanged), or "changed" since."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "gone"
    if not os.path.isfile(path) or os.path.islink(path):
        return "changed"
    if (st.st_size, st.st_mtime_ns) == (entry.get("size"), entry.get("mtime_ns")):
        return "ours"
    try:  # a hard link's mtime follows its source's: touched is not changed
        return "ours" if hash_file(path)[0] == entry.get("sha256") else "changed"
    except ImageError:
        return "changed"


def _read_manifest(dest: Path) -> dict[str, dict]:
    path = dest / MANIFEST
    try:
        with open(path, encoding="utf-8") as fh:
            files = json.load(fh)["files"]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as exc:
        raise NsfwTuiError(
            f"{path} is not a manifest this export can read ({exc}); move it away to start over"
        ) from None
    return {
        rel: e
        for rel, e in files.items()
        # only DIR/<label>/<name>: a manifest never sends a removal anywhere else
        if isinstance(e, dict)
        and Path(rel).parts == (e.get("label"), Path(rel).name)
        and e.get("label") in LABELS
        and Path(rel).name not in ("", ".", "..")
    }


def _others(dest: Path, ours: set[str]) -> list[str]:
    """Every file under DEST the export did not write, as paths relative to DEST."""
    found = []
    for folder, dirs, names in os.walk(dest):
        dirs.sort()
        base = Path(folder).relative_to(dest)
        for name in sorted(names):
            rel = (base / name).as_posix()
            if rel not in ours and rel != MANIFEST:
                found.append(rel)
    return found
