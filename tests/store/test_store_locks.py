"""POSIX lock safety: nothing in a process with live connections reads the store with plain I/O.

Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
included (docs/reliability.md, S14). If that happens, another process that closes its
connection believes it is the last user, checkpoints and deletes `store.db-wal` under the
live connections, and their later writes are lost or damage the file.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nsfw_tui.core.store import Store

WRITE_AND_CLOSE = """
import sys
from nsfw_tui.core.store import Store
with Store.open(sys.argv[1]) as store:
    store.set_labels(["from-other-process"], "sfw", source="import")
"""


def read_label(path: Path, sha: str) -> str | None:
    """A third process's view of one label, through plain SQLite."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1])\n"
            "r = c.execute('SELECT label FROM label_events WHERE sha256 = ? "
            "ORDER BY id DESC LIMIT 1', (sys.argv[2],)).fetchone()\n"
            "print(r[0] if r else 'none')",
            str(path),
            sha,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_a_second_store_in_one_process_keeps_the_first_ones_locks(tmp_path):
    path = tmp_path / "store.db"
    with Store.open(path):
        pass  # create and migrate
    first = Store.open(path)
    first.set_labels(["before"], "nsfw")
    second = Store.open(path, check=False)  # as every worker thread does
    try:
        subprocess.run([sys.executable, "-c", WRITE_AND_CLOSE, str(path)], check=True)
        wal = path.with_name(path.name + "-wal")
        assert wal.exists(), "another process deleted the WAL under live connections"
        first.set_labels(["after"], "nsfw")
        assert read_label(path, "after") == "nsfw"
        assert read_label(path, "from-other-process") == "sfw"
    finally:
        second.close()
        first.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        labels = dict(
            conn.execute(
                "SELECT sha256, label FROM label_events GROUP BY sha256 HAVING id = MAX(id)"
            )
        )
    finally:
        conn.close()
    assert labels == {"before": "nsfw", "after": "nsfw", "from-other-process": "sfw"}


@pytest.mark.slow
def test_a_running_watch_keeps_its_locks_while_import_writes_and_exits(tmp_path):
    """The same as above with real commands: a long-running watch, then `nsfw-tui import`."""
    import json

    from PIL import Image
    from support.tui import FAKE_ID, headless_watch, prepare_home

    from nsfw_tui.core.home import resolve_home

    repo = Path(__file__).resolve().parents[2]
    inbox, other = tmp_path / "inbox", tmp_path / "other"
    inbox.mkdir()
    other.mkdir()
    Image.new("RGB", (24, 16), (250, 90, 160)).save(inbox / "first.png")
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 40, 200, 30)).save(other / f"o{i}.png")
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    proc, lines = headless_watch(inbox, home)
    try:
        assert json.loads(lines.get(timeout=60))["path"].endswith("first.png")
        argv = [sys.executable, "-m", "nsfw_tui.cli", "import", str(other), "--label", "sfw"]
        argv += ["--home", str(home.root)]
        imported = subprocess.run(argv, cwd=repo, capture_output=True, text=True)
        assert imported.returncode == 0, imported.stderr
        assert home.store_path.with_name("store.db-wal").exists()
        Image.new("RGB", (24, 16), (5, 90, 160)).save(inbox / "later.png")
        later = json.loads(lines.get(timeout=30))
        assert later["path"].endswith("later.png")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    conn = sqlite3.connect(home.store_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        scored = {
            row[0]
            for row in conn.execute(
                "SELECT f.path FROM files f JOIN predictions p ON p.sha256 = f.sha256 "
                "WHERE p.model_id = ?",
                (FAKE_ID,),
            )
        }
        imports = conn.execute(
            "SELECT count(*) FROM label_events WHERE source = 'import'"
        ).fetchone()[0]
    finally:
        conn.close()
    assert {Path(p).name for p in scored} >= {"first.png", "later.png"}
    assert imports == 3
