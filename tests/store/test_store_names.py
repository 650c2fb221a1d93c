"""Names are bytes in the store: exact keys, and stores written before schema 5 (N1)."""

from __future__ import annotations

import os
import sqlite3

from nsfw_tui.core.names import from_b64, path_b64, path_key, path_text
from nsfw_tui.core.quarantine import release
from nsfw_tui.core.store import SCHEMA_VERSION, ScoreRecord, Store
from nsfw_tui.core.store_schema import APP_ID, MIGRATIONS, TEXT_NAMES_UPTO

RAW = os.fsdecode(b"/photos/bad\xff.jpg")  # the byte 0xff: not UTF-8
LITERAL = "/photos/bad\\xff.jpg"  # the four characters \, x, f, f


def record(path: str, sha: str, **kw) -> ScoreRecord:
    return ScoreRecord(path=path, size=kw.pop("size", 100), mtime_ns=1, sha256=sha, **kw)


def test_n1_names_show_the_same_text_but_keep_their_own_bytes():
    assert path_text(RAW) == path_text(LITERAL) == LITERAL  # one text to read...
    assert path_key(RAW) == b"/photos/bad\xff.jpg" and path_key(LITERAL) == LITERAL  # two keys
    assert path_b64(LITERAL) is None and path_b64("/photos/ok-é.jpg") is None
    assert from_b64(path_b64(RAW)) == RAW


def test_n1_a_raw_name_and_its_escaped_text_are_two_rows(store):
    store.record_files([record(RAW, "sha-raw", size=1), record(LITERAL, "sha-lit", size=2)])
    found = store.files([RAW, LITERAL])
    assert set(found) == {RAW, LITERAL}
    assert (found[RAW].sha256, found[LITERAL].sha256) == ("sha-raw", "sha-lit")
    assert store.counts()["files"] == 2
    assert store.paths_for("sha-raw") == [RAW]
    seen = {r.path for r in store.files_seen_since("/photos", 0)}
    assert seen == {RAW, LITERAL}
    store.set_labels(["sha-raw", "sha-lit"], "nsfw")
    assert {r.path for r in store.labelled_files()} == {RAW, LITERAL}
    # The same content seen at another absolute path never drops the raw row (S16's clean-up
    # of relative rows is for text keys only).
    store.record_files([record("/elsewhere/copy.jpg", "sha-raw")])
    assert RAW in store.files([RAW])
    store.forget_missing([RAW])
    assert set(store.files([RAW, LITERAL])) == {LITERAL}


def test_n1_moves_keep_both_names_exact(store):
    q_raw, q_lit = os.fsdecode(b"/q/bad\xff.jpg"), "/q/bad\\xff.jpg"
    store.record_files([record(RAW, "sha-raw"), record(LITERAL, "sha-lit")])
    store.record_move(RAW, q_raw, "sha-raw", "probability 0.9 >= 0.5")
    store.record_move(LITERAL, q_lit, "sha-lit", "probability 0.8 >= 0.5")
    assert store.open_move(q_raw).src == RAW and store.open_move(q_lit).src == LITERAL
    assert set(store.files([q_raw, q_lit])) == {q_raw, q_lit}  # each row followed its file
    move = store.open_move(q_raw)
    store.record_release(move.id, RAW)
    assert store.open_move(q_raw) is None and store.open_move(q_lit) is not None
    assert [m.released_to for m in store.moves()] == [RAW, None]


def schema_4_store(path, *moves: tuple[str, str]) -> None:
    """A store as nsfw-tui wrote it before schema 5, with moves whose names are text."""
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:4]:
        migration(conn)
    conn.execute("PRAGMA user_version=4")
    conn.execute(f"PRAGMA application_id={APP_ID}")
    for src, dest in moves:
        conn.execute(
            "INSERT INTO moves (sha256, src, dest, reason, moved_at, state) "
            "VALUES ('s', ?, ?, 'probability 0.9 >= 0.5', 1.0, 'done')",
            (src, dest),
        )
    conn.close()


def test_n1_a_schema_4_store_migrates_and_its_escaped_moves_still_release(tmp_path):
    inbox, q = tmp_path / "inbox", tmp_path / "q"
    (inbox / "sub").mkdir(parents=True)
    (q / "sub").mkdir(parents=True)
    raw_src = os.fsencode(inbox / "sub") + b"/old\xff.png"
    raw_dest = os.fsencode(q / "sub") + b"/old\xff.png"
    with open(raw_dest, "wb") as fh:
        fh.write(b"quarantined before the upgrade")
    # Schema 4 kept both names as escaped text (path_text).
    path = tmp_path / "store.db"
    schema_4_store(path, (path_text(os.fsdecode(raw_src)), path_text(os.fsdecode(raw_dest))))
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        upto = store._conn.execute(
            "SELECT value FROM store_info WHERE key = ?", [TEXT_NAMES_UPTO]
        ).fetchone()[0]
        assert upto == "1"
        origin, back = release(store, os.fsdecode(raw_dest), label=None)
    # Back under its exact bytes, not under the escaped text the old move recorded.
    assert os.fsencode(back) == raw_src and os.path.exists(raw_src)
    assert not os.path.exists(os.fsdecode(raw_src).replace("\udcff", "\\xff"))
    assert origin == back


def test_n1_a_move_made_after_the_upgrade_is_never_found_by_escaped_text(tmp_path):
    path = tmp_path / "store.db"
    schema_4_store(path)
    q_raw, q_lit = os.fsdecode(b"/q/new\xff.jpg"), "/q/new\\xff.jpg"
    with Store.open(path) as store:
        store.record_move("/in/new\\xff.jpg", q_lit, "sha-lit", "probability 0.8 >= 0.5")
        assert store.open_move(q_raw) is None  # the literal name's move is not the raw one's
        assert store.open_move(q_lit).src == "/in/new\\xff.jpg"
