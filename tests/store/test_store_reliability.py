"""Fault tests for the label store (docs/reliability.md, S1-S17), sized for CI; run with -s."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import random
import select
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nsfw_tui.core.errors import StoreError, StoreReadOnlyError
from nsfw_tui.core.store import SCHEMA_VERSION, ScoreRecord, Store
from nsfw_tui.core.store_backup import check_backup, restore
from nsfw_tui.core.store_schema import MIGRATIONS

REPO = Path(__file__).resolve().parents[2]
SPAWN = multiprocessing.get_context("spawn")
TABLES = {
    "files",
    "images",
    "label_events",
    "predictions",
    "features",
    "models",
    "runs",
    "moves",
    "store_info",
}
# Sized for CI on two cores; a longer run takes NSFW_TUI_FAULT_SEED and larger counts.
S1_TRANSACTIONS = 300
S4_ROUNDS = 10
S6_ROUNDS = 20
SEED = int(os.environ.get("NSFW_TUI_FAULT_SEED", "20240601"))
FLIPPED_SHA = "flip-me"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def integrity(path: Path) -> str:
    """`PRAGMA integrity_check` through a plain connection; a refusal to read counts as a result."""
    conn = sqlite3.connect(path)
    try:
        return "\n".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    except sqlite3.DatabaseError as exc:
        return f"error: {exc}"
    finally:
        conn.close()


def labels_of(store: Store) -> dict[str, str]:
    return {sha: ev.label for sha, ev in store.current_labels().items()}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def stop(processes) -> None:
    for p in processes:
        if p.is_alive():
            p.kill()
        p.join(5)


# -- S1: two writer processes ----------------------------------------------------------------


def _s1_inserter(path: str, n: int, barrier, out) -> None:
    """Watcher stand-in: one scored file per transaction, as fast as it can."""
    store = Store.open(path)
    barrier.wait()
    committed, errors, latencies = 0, [], []
    for i in range(n):
        rec = ScoreRecord(
            f"/photos/{i:05d}.jpg", 1000 + i, i, f"scan-{i:05d}", probability=0.5, model_id="m"
        )
        start = time.perf_counter()
        try:
            store.record_files([rec])
            committed += 1
        except Exception as exc:
            errors.append(repr(exc))
        latencies.append(time.perf_counter() - start)
    store.close()
    out.put(("insert", committed, errors, latencies))


def _s1_relabeler(path: str, n: int, barrier, out) -> None:
    """TUI stand-in: read the current label and write its opposite, in one transaction."""
    store = Store.open(path)
    barrier.wait()
    committed, errors, latencies = 0, [], []
    for _ in range(n):
        start = time.perf_counter()
        try:
            with store.write():
                current = store.current_labels([FLIPPED_SHA]).get(FLIPPED_SHA)
                flipped = "sfw" if current and current.label == "nsfw" else "nsfw"
                if store.set_labels([FLIPPED_SHA], flipped) is None:
                    raise AssertionError("a flip changed nothing: the read was stale")
            committed += 1
        except Exception as exc:
            errors.append(repr(exc))
        latencies.append(time.perf_counter() - start)
    store.close()
    out.put(("relabel", committed, errors, latencies))


def test_s1_two_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "store.db"
    Store.open(path).close()
    barrier, out = SPAWN.Barrier(2), SPAWN.Queue()
    workers = [
        SPAWN.Process(target=fn, args=(str(path), S1_TRANSACTIONS, barrier, out))
        for fn in (_s1_inserter, _s1_relabeler)
    ]
    start = time.perf_counter()
    try:
        for w in workers:
            w.start()
        results = {kind: rest for kind, *rest in (out.get(timeout=120) for _ in workers)}
    finally:
        stop(workers)
    wall = time.perf_counter() - start

    inserted, insert_errors, insert_lat = results["insert"]
    relabelled, relabel_errors, relabel_lat = results["relabel"]
    errors = insert_errors + relabel_errors
    with Store.open(path) as store:
        predictions = store.counts()["predictions"]
        history = [e.label for e in store.label_history(FLIPPED_SHA)]
    alternating = all(a != b for a, b in itertools.pairwise(history))
    print(
        f"\nS1: 2 x {S1_TRANSACTIONS} transactions in {wall:.1f} s: {len(errors)} errors surfaced, "
        f"lost updates: {relabelled - len(history)} labels, {inserted - predictions} predictions; "
        f"p95 commit latency {p95(insert_lat + relabel_lat) * 1000:.1f} ms "
        f"(insert {p95(insert_lat) * 1000:.1f} ms, relabel {p95(relabel_lat) * 1000:.1f} ms)"
    )
    assert errors == []
    assert inserted == relabelled == S1_TRANSACTIONS
    assert predictions == inserted
    assert len(history) == relabelled
    assert alternating
    assert history[-1] == ("sfw" if S1_TRANSACTIONS % 2 == 0 else "nsfw")


# -- S2: the busy-snapshot trap --------------------------------------------------------------


def test_s2_deferred_read_then_write_fails_at_once(tmp_path):
    """The trap itself: a deferred reader whose snapshot went stale cannot write, timeout or not."""
    path = tmp_path / "store.db"
    with Store.open(path) as b:
        a = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            a.execute("BEGIN")  # deferred: starts as a reader
            a.execute("SELECT count(*) FROM label_events").fetchone()
            b.set_labels(["written-by-b"], "nsfw")
            start = time.perf_counter()
            with pytest.raises(sqlite3.OperationalError, match="locked") as info:
                a.execute(
                    "INSERT INTO label_events (sha256, label, source, created_at) "
                    "VALUES ('written-by-a', 'sfw', 'raw', 0)"
                )
            failed_after = time.perf_counter() - start
            a.execute("ROLLBACK")
        finally:
            a.close()
        code = info.value.sqlite_errorcode
        print(f"\nS2 trap: deferred write failed after {failed_after:.3f} s, code {code}")
        assert code == 517  # SQLITE_BUSY_SNAPSHOT
        assert failed_after < 1.0  # the 30 s busy timeout was never used
        assert labels_of(b) == {"written-by-b": "nsfw"}


def test_s2_store_write_waits_and_succeeds(tmp_path):
    """Same interleaving through Store.write(): A reads then writes; B's write waits for A."""
    path = tmp_path / "store.db"
    Store.open(path).close()
    b_ready, b_result = threading.Event(), {}

    def writer_b() -> None:
        with Store.open(path) as b:  # one connection per thread
            b_ready.set()
            start = time.perf_counter()
            try:
                b.set_labels(["written-by-b"], "nsfw")
                b_result["ok"] = True
            except Exception as exc:
                b_result["error"] = repr(exc)
            b_result["waited"] = time.perf_counter() - start

    thread = threading.Thread(target=writer_b)
    with Store.open(path) as a:
        with a.write():
            seen = a._conn.execute("SELECT count(*) FROM label_events").fetchone()[0]
            thread.start()
            assert b_ready.wait(10)
            time.sleep(0.3)
            b_blocked = thread.is_alive()
            a.set_labels(["written-by-a"], "sfw")
        thread.join(30)
        events = a._conn.execute("SELECT count(*) FROM label_events").fetchone()[0]
        labels = labels_of(a)
    print(f"\nS2 store: B waited {b_result.get('waited', -1):.3f} s for A's write lock, then wrote")
    assert b_blocked, "B wrote while A held a write transaction"
    assert b_result.get("ok"), b_result.get("error")
    assert b_result["waited"] >= 0.25
    assert events == seen + 2
    assert labels == {"written-by-a": "sfw", "written-by-b": "nsfw"}


def test_s2_the_store_lends_no_connection_so_every_write_takes_the_lock_up_front(tmp_path):
    """Only `Store.write()` (BEGIN IMMEDIATE) writes: no caller can start its own transaction."""
    with Store.open(tmp_path / "store.db") as store:
        assert not hasattr(store, "conn") and not hasattr(store, "db")
        public = [n for n in dir(store) if not n.startswith("_")]
        assert not [n for n in public if isinstance(getattr(store, n), sqlite3.Connection)]


# -- S4: kill -9 during label writes ---------------------------------------------------------

S4_CHILD = r"""
import sys
from nsfw_tui.core.store import Store
store = Store.open(sys.argv[1])
prefix = sys.argv[2]
print("ready", flush=True)
i = 0
while True:
    label = ("nsfw", "sfw")[i % 2]
    batch = store.set_labels([f"{prefix}-{i}-a", f"{prefix}-{i}-b"], label)
    print(i, batch, label, flush=True)  # acknowledged only once the commit has returned
    i += 1
"""


@pytest.mark.slow
def test_s4_kill_9_during_label_writes_loses_no_acknowledged_label(tmp_path):
    path = tmp_path / "store.db"
    Store.open(path).close()
    rng = random.Random(SEED)
    acked_total, unacked_total, intact_rounds = 0, 0, 0
    for round_no in range(S4_ROUNDS):
        prefix = f"r{round_no}"
        child = subprocess.Popen(
            [sys.executable, "-c", S4_CHILD, str(path), prefix],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,  # import nsfw_tui the way the parent did, not from the working folder
        )
        try:
            ready, _, _ = select.select([child.stdout], [], [], 30)
            assert ready and child.stdout.readline() == b"ready\n", child.stderr.read()
            # The kill lands at a random moment after the first commit, however loaded the
            # machine is (a kill before any commit would test nothing).
            first = child.stdout.readline()
            time.sleep(rng.uniform(0.05, 0.4))
            child.kill()
            out = (first + child.stdout.read()).decode()
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
            child.stderr.close()
        assert child.returncode == -9
        acked = {}
        for line in out.splitlines(keepends=True):
            if line.endswith("\n"):  # a half-written line was not acknowledged
                i, batch, label = line.split()
                acked[batch] = (int(i), label)

        check = integrity(path)
        intact_rounds += check == "ok"
        assert check == "ok", f"round {round_no}: {check}"
        with Store.open(path) as store:
            rows = store._conn.execute(
                "SELECT batch, sha256, label FROM label_events WHERE sha256 LIKE ?", [f"{prefix}-%"]
            ).fetchall()
        batches: dict[str, list[tuple[str, str]]] = {}
        for batch, sha, label in rows:
            batches.setdefault(batch, []).append((sha, label))
        for batch, (i, label) in acked.items():
            expected = [(f"{prefix}-{i}-a", label), (f"{prefix}-{i}-b", label)]
            assert sorted(batches.get(batch, [])) == expected, f"lost acknowledged batch {i}"
        torn = [b for b, events in batches.items() if len(events) != 2]
        assert torn == [], f"round {round_no}: torn label batches {torn}"
        assert len(acked) > 0
        acked_total += len(acked)
        unacked_total += len(batches) - len(acked)
        assert len(batches) - len(acked) in (0, 1)  # at most the commit in flight at the kill
    print(
        f"\nS4: kill -9 during {acked_total} acknowledged label writes ({S4_ROUNDS} rounds): "
        f"0 lost acknowledged labels, 0 torn label batches, {unacked_total} committed but "
        f"unacknowledged, integrity_check ok in {intact_rounds}/{S4_ROUNDS} rounds"
    )


# -- S6: simultaneous start -------------------------------------------------------------------


def _s6_opener(paths: list[str], barrier, out) -> None:
    for round_no, path in enumerate(paths):
        barrier.wait()
        try:
            with Store.open(path) as store:
                out.put((round_no, "ok", store.schema_version))
        except Exception as exc:
            out.put((round_no, "error", repr(exc)))


def test_s6_two_processes_start_together_on_a_new_store(tmp_path):
    paths = [str(tmp_path / f"round-{i}" / "store.db") for i in range(S6_ROUNDS)]
    barrier, out = SPAWN.Barrier(2), SPAWN.Queue()
    # Two long-lived processes meet at the barrier each round: spawning per round costs ~1 s.
    openers = [SPAWN.Process(target=_s6_opener, args=(paths, barrier, out)) for _ in range(2)]
    try:
        for p in openers:
            p.start()
        results = [out.get(timeout=120) for _ in range(2 * S6_ROUNDS)]
    finally:
        stop(openers)
    failures = [r for r in results if r[1] != "ok"]
    good_rounds = 0
    for path in paths:
        conn = sqlite3.connect(path)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
        finally:
            conn.close()
        # Exactly the schema's tables (AUTOINCREMENT adds sqlite_sequence), migrated once.
        good_rounds += version == SCHEMA_VERSION and set(names) == TABLES | {"sqlite_sequence"}
    print(
        f"\nS6: {S6_ROUNDS - len({r[0] for r in failures})}/{S6_ROUNDS} rounds both processes up, "
        f"schema at user_version {SCHEMA_VERSION} in {good_rounds}/{S6_ROUNDS}"
    )
    assert failures == []
    assert good_rounds == S6_ROUNDS


@pytest.mark.parametrize("existing", ["new", "rollback-journal"])
def test_s6_open_waits_while_another_process_holds_the_write_lock(tmp_path, existing):
    """Deterministic form of the start race: switching to WAL used to fail at once.

    While another connection holds the write lock on a new or rollback-journal file, SQLite
    answers `PRAGMA journal_mode=WAL` with SQLITE_BUSY without calling the busy handler.
    """
    path = tmp_path / "store.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if existing == "rollback-journal":
        # A store of schema 2 as the first releases wrote it, before WAL was switched on.
        for migration in MIGRATIONS[:2]:
            migration(other)
        other.execute("PRAGMA user_version=2")
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        start = time.perf_counter()
        with Store.open(path) as store:
            waited = time.perf_counter() - start
            mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
            version = store.schema_version
    finally:
        release.join()
        other.close()
    print(f"\nS6 {existing}: open waited {waited:.3f} s for the other writer, then migrated")
    assert waited >= 0.25
    assert (mode, version) == ("wal", SCHEMA_VERSION)


# -- S8: a newer schema ----------------------------------------------------------------------


def test_s8_newer_schema_opens_read_only_and_writes_nothing(tmp_path):
    path = tmp_path / "store.db"
    with Store.open(path) as store:
        store.set_labels(["a"], "nsfw")
        store.add_model("m1", "builtin", threshold=0.5)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = digest(path)

    with Store.open(path) as store:
        assert store.readonly
        assert "newer" in store.readonly_reason
        assert store.schema_version == SCHEMA_VERSION + 1  # never migrated down
        assert labels_of(store) == {"a": "nsfw"}  # reading still works
        attempts = {
            "set_labels": lambda: store.set_labels(["b"], "sfw"),
            "record_files": lambda: store.record_files([ScoreRecord("/x.jpg", 1, 1, "x")]),
            "add_model": lambda: store.add_model("m2", "onnx", threshold=0.5),
            "set_active": lambda: store.set_active("m1"),
            "undo_batch": lambda: store.undo_batch("anything"),
        }
        for attempt in attempts.values():
            with pytest.raises(StoreReadOnlyError, match="newer"):
                attempt()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._conn.execute("DELETE FROM label_events")  # the connection itself is read-only
    unchanged = digest(path) == before
    print(
        f"\nS8: schema {SCHEMA_VERSION + 1} opened read-only, {len(attempts)}/{len(attempts)} "
        f"writes refused, bytes unchanged: {unchanged}"
    )
    assert unchanged


# -- S13: corrupt files, backup and restore -----------------------------------------------------


def test_s13_a_non_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "store.db"
    path.write_text("these are my notes, not a database\n" * 50)
    before = digest(path)
    with pytest.raises(StoreError, match="nsfw-tui restore") as info:
        Store.open(path)
    print(f"\nS13a: text file refused: {info.value}")
    assert "not an SQLite file" in str(info.value)
    assert digest(path) == before


def test_s13_b_flipped_bytes_in_page_2_are_refused_untouched(tmp_path):
    path = tmp_path / "store.db"
    with Store.open(path) as store:
        store.record_files(
            ScoreRecord(f"/photos/{i:04d}.jpg", 1000, i, f"sha-{i:04d}") for i in range(300)
        )
        store.set_labels([f"sha-{i:04d}" for i in range(300)], "sfw")
        root = store._conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name='files'"
        ).fetchone()
    assert root == (2,)  # page 2 is the files table's root
    assert not (tmp_path / "store.db-wal").exists()  # everything is in the main file
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    # The b-tree page header (type, freeblock, cell count, content start) and the first cell
    # pointers: flipping these is always detected, unlike bytes in a page's free space.
    for offset in range(page_size, page_size + 12):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    check = integrity(path)
    assert check != "ok", "the flip did not corrupt the file; pick other offsets"
    before = digest(path)

    with pytest.raises(StoreError, match="nsfw-tui restore") as info:
        Store.open(path)
    print(
        f"\nS13b: page 2 flipped (integrity_check: {check.splitlines()[0]}); refused: {info.value}"
    )
    assert "damaged" in str(info.value)
    assert digest(path) == before


def test_s13_c_backup_check_and_restore(tmp_path):
    path = tmp_path / "store.db"
    backups = tmp_path / "backups"
    backups.mkdir()
    with Store.open(path) as store:
        store.set_labels(["a", "b"], "nsfw")
        store.add_model("m1", "builtin", threshold=0.5)
        good = store.backup(backups / "good.db")
        assert check_backup(good) == SCHEMA_VERSION
        backup_digest = digest(good)
        with pytest.raises(StoreError, match="already exists"):
            store.backup(good)
        assert digest(good) == backup_digest
        store.set_labels(["a"], "sfw")  # work done after the backup
        store.set_labels(["c"], "nsfw")
        later = labels_of(store)

    store_digest = digest(path)
    junk = backups / "junk.db"
    junk.write_text("not a database")
    with pytest.raises(StoreError, match="not an"):
        restore(junk, path)
    plain = backups / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not an nsfw-tui backup"):
        restore(plain, path)
    assert digest(path) == store_digest  # refused restores leave the store alone

    kept, _ = restore(good, path)
    assert kept is not None and kept.exists() and kept.parent == path.parent
    assert digest(good) == backup_digest  # the backup is never written
    with Store.open(path) as store:
        restored = labels_of(store)
        assert store.active_model().id == "m1"
    with Store.open(kept) as old:
        assert labels_of(old) == later  # the replaced store is kept, not lost
    print(f"\nS13c: restored {restored} from the backup; the replaced store kept as {kept.name}")
    assert restored == {"a": "nsfw", "b": "nsfw"}


def test_s13_c_two_restores_in_one_second_keep_both_old_stores(tmp_path, monkeypatch):
    import nsfw_tui.core.store_backup as backup_module

    monkeypatch.setattr(backup_module.time, "strftime", lambda fmt: "20231114-221320")
    path = tmp_path / "store.db"
    with Store.open(path) as store:
        good = store.backup(tmp_path / "good.db")
        store.set_labels(["first"], "nsfw")
    first_kept, _ = restore(good, path)
    with Store.open(path) as store:
        store.set_labels(["second"], "sfw")
    second_kept, _ = restore(good, path)
    assert first_kept != second_kept
    with Store.open(first_kept) as one, Store.open(second_kept) as two:
        assert labels_of(one) == {"first": "nsfw"}
        assert labels_of(two) == {"second": "sfw"}


# -- S12 lite: a full database ---------------------------------------------------------------


def test_s12_full_database_refuses_the_batch_and_keeps_earlier_labels(tmp_path):
    with Store.open(tmp_path / "store.db") as store:
        store.set_labels(["a", "b"], "nsfw")
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")  # no room to grow
        big = [f"bulk-{i:05d}" for i in range(3000)]
        with pytest.raises(StoreError, match="full") as info:
            store.set_labels(big, "sfw")
        assert labels_of(store) == {"a": "nsfw", "b": "nsfw"}  # no partial batch
        assert not store._conn.in_transaction
        store._conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
        assert store.set_labels(big, "sfw") is not None
        assert len(labels_of(store)) == 3002
    print(f"\nS12: full database: {info.value}")
