"""The Parquet output of a scan: part files, and the manifest that says which of them count.

Part files are written whole and only then listed in ``_manifest.json``, which is replaced
atomically; readers (resume, ``import-scores``) read listed parts alone and keep one row per
input key, and every run starts by deleting parts that no manifest lists (a run stopped
between writing a part and listing it). So OUT is consistent whenever a run stops.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nsfw_tui.core.errors import NsfwTuiError

MANIFEST = "_manifest.json"
FORMAT = "nsfw-tui-scores"
VERSION = 1
PART_PREFIX = "part-"
KEY = "image_path"


@dataclass
class Manifest:
    model: str
    source: str
    threshold: float
    features: bool = False
    parts: list[dict[str, Any]] = field(default_factory=list)  # {"file", "rows"}
    shards: list[str] = field(default_factory=list)  # shard keys whose members are all in OUT

    def to_json(self) -> str:
        body = {"format": FORMAT, "version": VERSION, **self.__dict__}
        return json.dumps(body, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            body = json.loads(text)
            if body.get("format") != FORMAT:
                raise ValueError("not a scores manifest")
            if int(body.get("version", 0)) > VERSION:
                raise ValueError(f"written by a newer version (format {body['version']})")
            return cls(
                model=str(body["model"]),
                source=str(body["source"]),
                threshold=float(body["threshold"]),
                features=bool(body.get("features", False)),
                parts=[dict(p) for p in body.get("parts", [])],
                shards=[str(s) for s in body.get("shards", [])],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise NsfwTuiError(f"{where} is not a usable scores manifest: {exc}") from None


class OutDir:
    """A folder on a pyarrow file system holding parts and their manifest."""

    def __init__(self, fs: Any, path: str, display: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/") or "/"
        self.display = display

    @classmethod
    def open(cls, target: str) -> OutDir:
        """OUT given as a local folder or a URI pyarrow understands; one clear error else."""
        import os

        import pyarrow.fs as pafs

        from .sources import is_uri

        if is_uri(target):
            try:
                fs, path = pafs.FileSystem.from_uri(target)
            except (pafs.ArrowInvalid, OSError, ValueError) as exc:
                raise NsfwTuiError(f"cannot open {target}: {exc}") from None
            return cls(fs, path, target)
        return cls(pafs.LocalFileSystem(), os.path.abspath(target), target)

    @property
    def local(self) -> bool:
        """A plain local path (not given as a URI): no other node sees it."""
        from .sources import is_uri

        return not is_uri(self.display)

    def _join(self, name: str) -> str:
        return f"{self.path}/{name}"

    def prepare(self) -> None:
        """Create OUT if needed; refuse a file, or a folder that holds something else."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.File:
            raise NsfwTuiError(f"the output {self.display} is a file; give a folder or a URI")
        if info.type == pafs.FileType.NotFound:
            try:
                self.fs.create_dir(self.path, recursive=True)
            except OSError as exc:
                raise NsfwTuiError(f"cannot create {self.display}: {exc}") from None
            return
        if self.manifest() is None:
            names = [n for n in self._names() if not n.startswith(PART_PREFIX)]
            if names:
                raise NsfwTuiError(
                    f"{self.display} holds other files ({names[0]}, ...) and no {MANIFEST}; "
                    "give an empty or new folder"
                )

    def _names(self) -> list[str]:
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except OSError as exc:
            raise NsfwTuiError(f"cannot list {self.display}: {exc}") from None
        return sorted(i.base_name for i in infos)

    def manifest(self) -> Manifest | None:
        try:
            with self.fs.open_input_stream(self._join(MANIFEST)) as fh:
                text = fh.read().decode("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            import pyarrow.fs as pafs

            if self.fs.get_file_info(self._join(MANIFEST)).type == pafs.FileType.NotFound:
                return None
            raise NsfwTuiError(f"cannot read {self.display}/{MANIFEST}: {exc}") from None
        return Manifest.from_json(text, f"{self.display}/{MANIFEST}")

    def remove_orphans(self, manifest: Manifest | None) -> list[str]:
        """Delete parts no manifest lists (a run stopped before listing them)."""
        listed = {p["file"] for p in manifest.parts} if manifest else set()
        gone = []
        for name in self._names():
            if name.startswith(PART_PREFIX) and name not in listed:
                self.fs.delete_file(self._join(name))
                gone.append(name)
        return gone

    def write_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest atomically: a rename on a file system, one PUT on a store."""
        data = manifest.to_json().encode("utf-8")
        final = self._join(MANIFEST)
        tmp = self._join(f".{MANIFEST}.{secrets.token_hex(4)}.tmp")
        with self.fs.open_output_stream(tmp) as fh:
            fh.write(data)
        try:
            self.fs.move(tmp, final)
        except (OSError, NotImplementedError):  # an object store without renames
            self.fs.delete_file(tmp)
            with self.fs.open_output_stream(final) as fh:
                fh.write(data)

    def write_part(self, table: Any, run: str, seq: int) -> str:
        """Write one part file whole; listing it in the manifest is the caller's next step."""
        import pyarrow.parquet as pq

        name = f"{PART_PREFIX}{run}-{seq:05d}.parquet"
        pq.write_table(table, self._join(name), filesystem=self.fs)
        return name

    def iter_parts(self, manifest: Manifest, columns: list[str] | None = None) -> Iterator[Any]:
        """Each listed part as a pyarrow Table (``columns`` only, where given)."""
        import pyarrow.parquet as pq

        for part in manifest.parts:
            path = self._join(part["file"])
            try:
                yield pq.read_table(path, filesystem=self.fs, columns=columns)
            except (OSError, ValueError) as exc:
                raise NsfwTuiError(
                    f"{self.display}: part {part['file']} listed in {MANIFEST} cannot be read: "
                    f"{exc}"
                ) from None

    def done_keys(self, manifest: Manifest | None) -> set[str]:
        if manifest is None:
            return set()
        done: set[str] = set()
        for table in self.iter_parts(manifest, [KEY]):
            done.update(table.column(KEY).to_pylist())
        return done


def new_run_id() -> str:
    """Sorts by start time; unique across runs and machines."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
