"""Ctrl+C on `nsfw-tui scan --engine ray`: a clean stop, OUT consistent, the rest on a rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from support.imagegen import photo_folder
from support.scale import WORKER_PATH, parts_rows

pytest.importorskip("ray")


def _listed(out) -> int:
    try:
        return len(json.loads((out / "_manifest.json").read_text())["parts"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(tmp_path):
    photo_folder(tmp_path / "src", 150, size=(48, 40))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": WORKER_PATH, "RAY_USAGE_STATS_ENABLED": "0"}
    env["NSFW_TUI_HOME"] = str(tmp_path / "home")
    cmd = [
        sys.executable,
        "-m",
        "nsfw_tui.cli",
        "scan",
        str(tmp_path / "src"),
        "--engine",
        "ray",
        "-o",
        str(out),
        "--ray-workers",
        "1",
        "batch_size=2",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and _listed(out) == 0:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before a part was listed"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Cancelled; everything finished before Ctrl+C is saved." in err
    kept = Counter(r["image_path"] for r in parts_rows(out))
    assert kept and set(kept.values()) == {1} and len(kept) < 150
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(kept)} already in the output" in done.stdout
    rows = Counter(r["image_path"] for r in parts_rows(out))
    assert len(rows) == 150 and set(rows.values()) == {1}
