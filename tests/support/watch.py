"""A watcher on a temporary inbox with the fake scorer, the images the watch tests write, a
native observer deaf to the inbox, and a watch run under a lowered inotify budget."""

from __future__ import annotations

import io
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from nsfw_tui.core.decode_pool import decode_path
from nsfw_tui.core.scan import ScanOptions
from nsfw_tui.core.store import Store
from nsfw_tui.core.watch import Watcher, WatchOptions
from nsfw_tui.core.watch.coverage import native_observer
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
        self.notices: list[str] = []
        self.reads: list[tuple[str, int | None]] = []  # (path, bytes read) per decode
        self.options = options
        self.watcher: Watcher | None = None

    def decoder(self, path, spec, use_draft, max_frames):
        result = decode_path(path, spec, use_draft, max_frames)
        self.reads.append((path, result.size))
        return result

    def start(self, *, observer_factory=None, **overrides) -> Watcher:
        """Start a watcher; ``observer_factory`` makes its native observer (a deaf one)."""
        opts = dict(
            settle_s=SETTLE,
            polling=self.kind == "polling",
            poll_interval_s=0.2,
            never_settles_timeout_s=3.0,
            undecodable_grace_s=3.0,
            supervise_interval_s=0.2,
            rescan_interval_s=600,
        )
        opts.update(self.options)
        opts.update(overrides)
        self.watcher = Watcher(
            self.inbox,
            self.store_path,
            self.scorer,
            threshold=THRESHOLD,
            options=WatchOptions(**opts),
            scan_options=ScanOptions(workers=0, batch_size=16, decoder=self.decoder),
            on_decision=self.lines.append,
            on_notice=self.notices.append,
            log_path=self.log,
            observer_factory=observer_factory,
        )
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

    def decided_at(self, names: set[str], timeout: float) -> dict[str, float]:
        """When (``time.monotonic()``, polled every 20 ms) each of ``names``, paths under the
        inbox, got its first line; those still without one after ``timeout`` s are left out."""
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while not names <= seen.keys() and time.monotonic() < deadline:
            for d in list(self.lines):
                name = Path(d["path"]).relative_to(self.inbox).as_posix()
                seen.setdefault(name, time.monotonic())
            time.sleep(0.02)
        return seen

    def by_name(self) -> dict[str, dict]:
        return {Path(d["path"]).name: d for d in self.lines}

    def counts(self) -> Counter:
        return Counter(Path(d["path"]).relative_to(self.inbox).as_posix() for d in self.lines)


class DropsRootFiles(FileSystemEventHandler):
    """Passes on every event except those for files directly in ``root``."""

    def __init__(self, handler: FileSystemEventHandler, root: str) -> None:
        self.handler = handler
        self.root = root

    def dispatch(self, event: FileSystemEvent) -> None:
        if os.path.dirname(os.fsdecode(event.src_path)) != self.root:
            self.handler.dispatch(event)


def deaf_to_the_root(refused):
    """The real native observer, except that nothing that happens directly in the watched
    folder reaches the watcher, as on a mount whose changes never reach inotify."""
    obs = native_observer(refused)
    schedule = obs.schedule
    obs.schedule = lambda handler, path, **kw: schedule(DropsRootFiles(handler, path), path, **kw)
    return obs


# `python -c DEAF_CLI ARGS...`: the real `nsfw-tui ARGS...` with the fake scorer and a native
# observer deaf to the watched folder itself (run from the repository root).
DEAF_CLI = (
    "import sys; sys.path.insert(0, 'tests')\n"
    "import nsfw_tui.core.watch.watcher as watcher\n"
    "from support.watch import deaf_to_the_root\n"
    "watcher.native_observer = deaf_to_the_root\n"
    "from support.tui import CLI_WITH_FAKE_SCORER\n"
    "exec(CLI_WITH_FAKE_SCORER)\n"
)


def limited_watch(tmp: str, folders: int, limit: int) -> None:
    """Run in a user namespace (`unshare -Ur`): lower this namespace's inotify watch budget to
    ``limit``, watch ``folders`` folders with a Harness, drop one file in each, and print one
    JSON object: when each was decided (seconds after landing), the notices, whether it polls.

    The budget is `/proc/sys/user/max_inotify_watches`, which belongs to the namespace.
    `/proc/sys/fs/inotify/max_user_watches` is the host's: where the namespace's root is the
    host's root, writing it there would lower the limit for every program on the machine.
    """
    import json

    budget = Path("/proc/sys/user/max_inotify_watches")
    budget.write_text(str(limit))
    h = Harness(Path(tmp))
    names = [f"d{i:03d}/landed.png" for i in range(folders)]
    for name in names:
        (h.inbox / name).parent.mkdir()
    w = h.start()
    landed = {}
    for i, name in enumerate(names):
        (h.inbox / name).write_bytes(image_bytes(i, red=5))
        landed[name] = time.monotonic()
    decided = h.decided_at(set(names), timeout=30)
    h.wait_lines(len(names), timeout=5)
    result = {
        "limit": int(budget.read_text()),
        "took": {n: decided[n] - landed[n] for n in decided},
        "lines": len(h.lines),
        "notices": h.notices,
        "polling": w.stats().polling,
    }
    h.stop()
    print(json.dumps(result))
