"""Helpers for the Ray engine's tests: a shared local Ray, mixed image folders, row readers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from support.imagegen import (
    animated_gif,
    photo,
    png_header_bomb,
    save,
    truncated_jpeg,
    zero_tailed,
)

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
# Ray workers import the project and `support` (a swapped decoder) from these.
WORKER_PATH = os.pathsep.join([str(REPO), str(TESTS)])
RAY_ARGS = {
    "include_dashboard": False,
    "log_to_driver": False,
    "object_store_memory": 150 * 1024**2,
    "runtime_env": {"env_vars": {"PYTHONPATH": WORKER_PATH, "RAY_USAGE_STATS_ENABLED": "0"}},
}


def mixed_folder(folder: Path, good: int, *, size=(72, 56)) -> dict[str, str | None]:
    """``good`` photos (JPEG and PNG), animated GIFs, and one file of each bad kind.

    Returns {absolute path: expected error kind or None}.
    """
    folder.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str | None] = {}
    for i in range(good):
        suffix = ".png" if i % 5 == 0 else ".jpg"
        p = save(photo(size, i), folder / f"sub{i % 3}" / f"img_{i:03d}{suffix}")
        expect[str(p)] = None
    for i in range(4):
        colours = [(40 * i, 200 - 30 * i, 90), (220, 60 + 20 * i, 30), (10, 10, 200 - 40 * i)]
        expect[str(animated_gif(folder / f"anim_{i}.gif", colours))] = None
    expect[str(truncated_jpeg(folder / "bad_truncated.jpg"))] = "truncated"
    expect[str(png_header_bomb(folder / "bad_bomb.png", 100_000, 100_000))] = "bomb"
    (folder / "bad_empty.jpg").write_bytes(b"")
    expect[str(folder / "bad_empty.jpg")] = "empty"
    (folder / "bad_text.jpg").write_bytes(b"this is not an image at all\n" * 4)
    expect[str(folder / "bad_text.jpg")] = "unidentified"
    expect[str(zero_tailed(folder / "bad_zeros.png"))] = "truncated"
    return expect


def parts_rows(out: Path) -> list[dict]:
    """Every row of the parts OUT's manifest lists (duplicates kept: tests count them)."""
    import json

    import pyarrow.parquet as pq

    manifest = json.loads((out / "_manifest.json").read_text())
    rows: list[dict] = []
    for part in manifest["parts"]:
        rows.extend(pq.read_table(out / part["file"]).to_pylist())
    return rows


def bytes_decoder(task, spec, use_draft: bool, max_frames: int):
    """A pool decoder over (key, bytes) tasks that hangs or crashes on names that say so."""
    from nsfw_tui.scale.worker import decode_task

    name = os.path.basename(task[0])
    if "hang" in name:
        time.sleep(120)
    if "crash" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    return decode_task(task, spec, use_draft, max_frames)


def failing_fs():
    """A local pyarrow file system whose reads of names holding "refuse" fail, as a store
    that keeps denying an object would: Ray's reader gives up on the whole task."""
    import pyarrow.fs as pafs

    return pafs.PyFileSystem(RefusingHandler())


try:
    from pyarrow.fs import FileSystemHandler as _Handler
except ImportError:  # the light install: the tests that use it skip
    _Handler = object


class RefusingHandler(_Handler):
    """pyarrow FileSystemHandler over the local file system (see failing_fs)."""

    def __init__(self) -> None:
        import pyarrow.fs as pafs

        self.fs = pafs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, RefusingHandler)

    def __ne__(self, other) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return 1

    def get_type_name(self) -> str:
        return "refusing"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def _check(self, path) -> None:
        if "refuse" in os.path.basename(path):
            raise OSError(f"access denied by the store: {path}")

    def open_input_stream(self, path):
        self._check(path)
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        self._check(path)
        return self.fs.open_input_file(path)

    # Writes and the rest, as the local file system does them.
    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("not here")

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)

    def copy_file(self, src, dest):
        self.fs.copy_file(src, dest)

    def open_output_stream(self, path, metadata):
        return self.fs.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path, metadata=metadata)
