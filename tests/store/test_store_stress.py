"""Every writer at once on one store, a 40 s foreign lock, and 20 rounds of kill -9 (S17).

The review screen's label writer, two `import`s with opposite labels, a `watch` and a `scan`
share one store. Each prints a line only after its write committed; the oracle is that every
reported write is in the store, `integrity_check` is ok after every kill, no label event id is
ever reused, and labels queued behind the long lock are saved once it is released.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from support.tui import FAKE_ID, prepare_home

from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.images import hash_file

REPO = Path(__file__).resolve().parents[2]
CHILD = str(REPO / "tests" / "support" / "stress_children.py")
SEED = int(os.environ.get("NSFW_TUI_FAULT_SEED", "20240601"))
ROUNDS = 20
LOCK_S = 40.0  # longer than the store's 30 s busy timeout
# `python -c HOLD_LOCK STORE SECONDS`: takes the store's write lock, says so, holds it that long.
HOLD_LOCK = (
    "import sqlite3, sys, time\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2])); c.execute('ROLLBACK')\n"
)


class Looper:
    """Keeps one role running: restarts it when it exits or is killed; collects its lines."""

    def __init__(self, name: str, argv, *, once: bool) -> None:
        self.name, self.argv, self.once = name, argv, once
        self.lines: list[dict] = []  # acknowledged writes, in order
        self.runs: list[tuple[int, str, str]] = []  # (exit code, stdout, stderr) of each run
        self.proc: subprocess.Popen | None = None
        self.stop = threading.Event()
        self.started = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.proc = subprocess.Popen(
                [sys.executable, *self.argv(self.started)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self.started += 1
            out = []
            for line in self.proc.stdout:
                out.append(line)
                if line.startswith("{"):
                    self.lines.append(json.loads(line))
            err = self.proc.stderr.read()
            self.proc.wait()
            self.runs.append((self.proc.returncode, "".join(out), err))
            if not self.once:
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)


def store_state(path: Path) -> tuple[str, dict[int, tuple]]:
    conn = sqlite3.connect(path, timeout=60)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        events = {
            r[0]: tuple(r[1:])
            for r in conn.execute("SELECT id, sha256, label, source, batch FROM label_events")
        }
    finally:
        conn.close()
    return check, events


@pytest.mark.slow
def test_every_writer_at_once_through_a_long_lock_and_kill_9(tmp_path):
    rng = random.Random(SEED)
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    store = str(home.store_path)
    screen_dir, shared, scan_dir, inbox = (tmp_path / n for n in ("screen", "shared", "scan", "in"))
    for folder, n in ((screen_dir, 12), (shared, 30), (scan_dir, 40)):
        folder.mkdir()
        for i in range(n):
            Image.new("RGB", (20, 16), (i * 6 % 256, len(folder.name) * 20, i)).save(
                folder / f"{folder.name}-{i:03d}.png"
            )
    inbox.mkdir()
    h = ["--home", str(home.root)]
    roles = {
        "writer": Looper(
            "writer", lambda k: [CHILD, "writer", store, str(screen_dir), str(k * 7)], once=False
        ),
        "import-nsfw": Looper(
            "import-nsfw",
            lambda k: ["-m", "nsfw_tui.cli", "import", str(shared), "--label", "nsfw", *h],
            once=False,
        ),
        "import-sfw": Looper(
            "import-sfw",
            lambda k: ["-m", "nsfw_tui.cli", "import", str(shared), "--label", "sfw", *h],
            once=False,
        ),
        "scan": Looper(
            "scan",
            lambda k: [CHILD, "cli", "scan", str(scan_dir), "-o", str(tmp_path / f"s{k}.csv"), *h],
            once=False,
        ),
        "watch": Looper(
            "watch",
            lambda k: [CHILD, "cli", "watch", str(inbox), "--headless", *h, "settle_s=0.2"],
            once=False,
        ),
    }
    feeding = threading.Event()

    def feed() -> None:
        i = 0
        while not feeding.is_set():
            Image.new("RGB", (16, 16), (i % 256, 10, 200)).save(inbox / f"up-{i:04d}.png")
            i += 1
            time.sleep(0.25)

    feeder = threading.Thread(target=feed, daemon=True)
    for looper in roles.values():
        looper.thread.start()
    feeder.start()
    seen: dict[int, tuple] = {}
    checks: list[str] = []
    waiting_at_release = 0
    acks_at_release = 0
    try:
        time.sleep(3.0)
        for round_no in range(ROUNDS):
            if round_no == ROUNDS // 2:
                argv = [sys.executable, "-c", HOLD_LOCK, store, str(LOCK_S)]
                locker = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
                assert locker.stdout.readline().strip() == "locked"
                locker.wait(timeout=LOCK_S + 30)
                busy = [x for x in roles["writer"].lines if "waiting" in x]
                assert busy, "the writer never saw the lock"
                waiting_at_release = busy[-1]["waiting"]
                acks_at_release = len([x for x in roles["writer"].lines if "labels" in x])
            time.sleep(rng.uniform(0.4, 1.5))
            victim = rng.choice(list(roles))
            roles[victim].kill()
            check, events = store_state(home.store_path)
            checks.append(check)
            for event_id, row in seen.items():
                assert events.get(event_id) == row, f"label event {event_id} changed or vanished"
            seen = events
        time.sleep(4.0)
    finally:
        feeding.set()
        for looper in roles.values():
            looper.stop.set()
            looper.kill()
        for looper in roles.values():
            looper.thread.join(30)
    check, events = store_state(home.store_path)
    checks.append(check)
    assert set(checks) == {"ok"}
    for event_id, row in seen.items():
        assert events.get(event_id) == row

    # The screen's writer: every batch it reported saved is there, with its labels.
    batches: dict[str, dict[str, str]] = {}
    for sha, label, _, batch in events.values():
        batches.setdefault(batch, {})[sha] = label
    writer_acks = [x for x in roles["writer"].lines if "labels" in x and x["batch"]]
    assert writer_acks
    for ack in writer_acks:
        assert batches.get(ack["batch"]) == ack["labels"]
    acks_after = len([x for x in roles["writer"].lines if "labels" in x]) - acks_at_release
    assert waiting_at_release > 0 and acks_after >= waiting_at_release

    # The imports: at least as many events of each label as the runs that finished reported.
    for label, name in (("nsfw", "import-nsfw"), ("sfw", "import-sfw")):
        reported = 0
        for code, out, _ in roles[name].runs:
            match = re.search(r"labelled (\d+) NSFW and (\d+) SFW", out)
            if code == 0 and match:
                reported += int(match.group(1 if label == "nsfw" else 2))
        stored = sum(1 for _, lab, src, _ in events.values() if src == "import" and lab == label)
        assert stored >= reported
        assert any(code == 0 for code, _, _ in roles[name].runs)

    # The watch and the scan: every decision and every written row has its prediction.
    conn = sqlite3.connect(home.store_path)
    try:
        predicted = {
            r[0] for r in conn.execute("SELECT sha256 FROM predictions WHERE model_id=?", [FAKE_ID])
        }
    finally:
        conn.close()
    decisions = [x for x in roles["watch"].lines if "decision" in x]
    assert decisions
    assert all(d["sha256"] in predicted for d in decisions if d["sha256"])
    scanned = 0
    for k in range(roles["scan"].started):
        out = tmp_path / f"s{k}.csv"
        if any(code == 0 for code, _, _ in roles["scan"].runs) and out.exists():
            with open(out, newline="") as fh:
                for row in csv.DictReader(fh):
                    sha, _ = hash_file(row["image_path"])
                    assert sha in predicted
                    scanned += 1
    assert scanned
    starts = ", ".join(f"{n} x{r.started}" for n, r in roles.items())
    print(
        f"\nS17: {ROUNDS} kill -9 rounds ({starts} starts), "
        f"integrity ok {checks.count('ok')}/{len(checks)}, {len(events)} label events, "
        f"{len(writer_acks)} screen labels acknowledged, {waiting_at_release} queued behind a "
        f"{LOCK_S:.0f} s lock and saved after it, {len(decisions)} watch decisions"
    )
