"""A watcher on a temporary inbox with the fake scorer, and the images the watch tests write."""

from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from nsfw_tui.core.decode_pool import decode_path
from nsfw_tui.core.scan import ScanOptions
from nsfw_tui.core.store import Store
from nsfw_tui.core.watch import Watcher, WatchOptions
from support.tui import RedScorer

SETTLE = 0.4
THRESHOLD = 0.5


def image_bytes(seed: int, size=(48, 32), red: int | None = None, fmt="PNG") -> bytes:
    """Unique noise (by seed); ``red`` fixes the red channel, so P(nsfw) = red / 255."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    if red is not None:
        arr[..., 0] = red
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


class Harness:
    """A watcher on ``tmp_path/inbox`` with a fake scorer, inline decoding and a read log."""

    def __init__(self, tmp_path: Path, kind: str = "native", **options) -> None:
        self.tmp = tmp_path
        self.inbox = tmp_path / "inbox"
        self.outside = tmp_path / "outside"
        self.inbox.mkdir(exist_ok=True)
        self.outside.mkdir(exist_ok=True)
        self.store_path = tmp_path / "home" / "store.db"
        Store.open(self.store_path).close()
        self.log = tmp_path / "watch.jsonl"
        self.kind = kind
        self.scorer = RedScorer("fake-watch")
        self.lines: list[dict] = []
        self.reads: list[tuple[str, int | None]] = []  # (path, bytes read) per decode
        self.options = options
        self.watcher: Watcher | None = None

    def decoder(self, path, spec, use_draft, max_frames):
        result = decode_path(path, spec, use_draft, max_frames)
        self.reads.append((path, result.size))
        return result

    def start(self, **overrides) -> Watcher:
        opts = dict(
            settle_s=SETTLE, polling=self.kind == "polling", poll_interval_s=0.2,
            never_settles_timeout_s=3.0, undecodable_grace_s=3.0, supervise_interval_s=0.2,
            rescan_interval_s=600,
        )  # fmt: skip
        opts.update(self.options)
        opts.update(overrides)
        self.watcher = Watcher(
            self.inbox, self.store_path, self.scorer, threshold=THRESHOLD,
            options=WatchOptions(**opts),
            scan_options=ScanOptions(workers=0, batch_size=16, decoder=self.decoder),
            on_decision=self.lines.append, log_path=self.log,
        )  # fmt: skip
        self.watcher.start()
        return self.watcher

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def wait_lines(self, n: int, timeout: float = 20.0, quiet: float = SETTLE) -> float:
        """Wait for ``n`` lines, then until the watcher has been idle for ``quiet`` s.

        A late event (a duplicate in the making) makes the watcher busy again and restarts
        the quiet spell, so an extra line still shows; ``quiet=0`` returns at ``n`` lines.
        """
        started = time.monotonic()
        deadline = started + timeout
        while len(self.lines) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.lines)} of {n} lines after {timeout} s")
            time.sleep(0.02)
        took = time.monotonic() - started
        idle_since = None
        while quiet > 0:
            now = time.monotonic()
            if not self.watcher.idle():
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= quiet:
                break
            if now > deadline + timeout:
                raise AssertionError(f"the watcher was still busy {timeout} s after {n} lines")
            time.sleep(0.02)
        return took

    def by_name(self) -> dict[str, dict]:
        return {Path(d["path"]).name: d for d in self.lines}

    def counts(self) -> Counter:
        return Counter(Path(d["path"]).relative_to(self.inbox).as_posix() for d in self.lines)
