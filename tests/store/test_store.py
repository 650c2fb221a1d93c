"""Functional tests for the label store: opening, scan records, labels and undo, models."""

from __future__ import annotations

import itertools
import os
import sqlite3

import numpy as np
import pytest

import nsfw_tui.core.store as store_module
from nsfw_tui.core.errors import StoreError
from nsfw_tui.core.store import SCHEMA_VERSION, ScoreRecord, Store, path_text

TABLES = {"files", "images", "label_events", "predictions", "features", "models", "runs"}


def labels_of(store: Store) -> dict[str, str]:
    return {sha: ev.label for sha, ev in store.current_labels().items()}


def pragma(store: Store, name: str):
    return store._conn.execute(f"PRAGMA {name}").fetchone()[0]


def event_count(store: Store) -> int:
    return store._conn.execute("SELECT count(*) FROM label_events").fetchone()[0]


def record(path: str, sha: str | None, **kw) -> ScoreRecord:
    return ScoreRecord(
        path=path, size=kw.pop("size", 100), mtime_ns=kw.pop("mtime_ns", 1), sha256=sha, **kw
    )


# -- opening -------------------------------------------------------------------------------


def test_open_creates_folder_and_file_with_pragmas(tmp_path):
    path = tmp_path / "new" / "deeper" / "labels.db"
    assert not path.parent.exists()
    with Store.open(path) as s:
        assert path.is_file()
        assert pragma(s, "journal_mode") == "wal"
        assert pragma(s, "synchronous") == 2  # FULL
        assert pragma(s, "busy_timeout") == 30000
        assert pragma(s, "foreign_keys") == 1
        assert pragma(s, "user_version") == SCHEMA_VERSION
        assert s.schema_version == SCHEMA_VERSION
        assert not s.readonly
        tables = {
            r[0] for r in s._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert tables >= TABLES
        s.set_labels(["a"], "nsfw")
    # Reopening keeps the data and sets the per-connection pragmas again.
    with Store.open(path) as s:
        assert labels_of(s) == {"a": "nsfw"}
        assert pragma(s, "synchronous") == 2
        assert pragma(s, "busy_timeout") == 30000
        assert s.schema_version == SCHEMA_VERSION


def test_open_refuses_a_folder(tmp_path):
    with pytest.raises(StoreError, match="folder"):
        Store.open(tmp_path)


def test_failed_write_rolls_back_everything(store):
    store.set_labels(["kept"], "sfw")
    with pytest.raises(RuntimeError), store.write():
        store.set_labels(["lost-1", "lost-2"], "nsfw")
        raise RuntimeError("boom")
    assert labels_of(store) == {"kept": "sfw"}
    assert event_count(store) == 1
    assert not store._conn.in_transaction


# -- files, images, predictions, features --------------------------------------------------


def test_record_files_round_trip(store):
    feats_a = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    feats_b = np.arange(8, dtype=np.float32).reshape(1, 8) / 7
    store.record_files(
        [
            record(
                "/p/a.gif",
                "sha-a",
                probability=0.9,
                model_id="m1",
                width=64,
                height=32,
                format="GIF",
                n_frames=3,
                features=feats_a,
                size=111,
                mtime_ns=5,
            ),
            record(
                "/p/b.png",
                "sha-b",
                probability=0.1,
                model_id="m1",
                width=8,
                height=8,
                format="PNG",
                n_frames=1,
                features=feats_b,
            ),
            record("/p/c.png", "sha-c"),  # hashed but not scored
            record("/p/broken.jpg", None, error_kind="truncated", error="truncated file"),
        ]
    )

    files = store.files(["/p/a.gif", "/p/b.png", "/p/c.png", "/p/broken.jpg", "/p/none.jpg"])
    assert set(files) == {"/p/a.gif", "/p/b.png", "/p/c.png", "/p/broken.jpg"}
    a = files["/p/a.gif"]
    assert (a.sha256, a.size, a.mtime_ns, a.error_kind) == ("sha-a", 111, 5, None)
    broken = files["/p/broken.jpg"]
    assert (broken.sha256, broken.error_kind, broken.error) == (None, "truncated", "truncated file")

    image = store.image("sha-a")
    assert image is not None
    assert (image.width, image.height, image.format, image.n_frames) == (
        64,
        32,
        "GIF",
        3,
    )
    assert store.image("sha-c") is not None
    assert store.image("missing") is None
    assert store.paths_for("sha-b") == ["/p/b.png"]

    assert store.predictions("m1") == pytest.approx({"sha-a": 0.9, "sha-b": 0.1})
    assert store.predictions("m1", ["sha-b", "sha-c"]) == pytest.approx({"sha-b": 0.1})
    assert store.predictions("other-model") == {}

    got = store.features("m1", "sha-a")
    assert got.dtype == np.float16
    assert got.shape == (3, 8)
    np.testing.assert_array_equal(got, feats_a.astype(np.float16))
    np.testing.assert_array_equal(store.features("m1", "sha-b"), feats_b.astype(np.float16))
    assert store.features("m1", "sha-c").shape == (0, 0)
    stored = store._conn.execute("SELECT count(*) FROM features WHERE sha256='sha-a'").fetchone()[0]
    assert stored == 3  # one row per frame
    counts = store.counts()
    assert counts == {"files": 4, "images": 3, "predictions": 2, "label_events": 0, "models": 0}


def test_rescoring_replaces_features_and_keeps_known_image_fields(store):
    first = record(
        "/p/a.gif",
        "s",
        probability=0.2,
        model_id="m",
        width=10,
        height=20,
        n_frames=3,
        features=np.ones((3, 4)),
    )
    store.record_files([first])
    again = record("/p/a.gif", "s", probability=0.7, model_id="m", features=np.full((2, 4), 0.5))
    store.record_files([again])
    assert store.predictions("m") == pytest.approx({"s": 0.7})
    np.testing.assert_array_equal(store.features("m", "s"), np.full((2, 4), 0.5, np.float16))
    image = store.image("s")
    assert (image.width, image.height, image.n_frames) == (10, 20, 3)


def test_files_lookup_for_unchanged_paths(store):
    # More paths than one IN (...) chunk, so the chunked lookup is exercised.
    paths = [f"/photos/{i:05d}.jpg" for i in range(2000)]
    store.record_files(record(p, f"h{i}", size=i, mtime_ns=10 * i) for i, p in enumerate(paths))
    found = store.files([*paths, "/photos/new.jpg"])
    assert len(found) == 2000
    assert "/photos/new.jpg" not in found
    row = found["/photos/01234.jpg"]
    assert (row.sha256, row.size, row.mtime_ns) == ("h1234", 1234, 12340)
    assert store.files([]) == {}


def test_non_utf8_paths_store_and_look_up_as_the_file_system_gives_them(store):
    raw = os.fsdecode(b"/photos/bad\xff.jpg")  # surrogate escape, not encodable as UTF-8
    with pytest.raises(UnicodeEncodeError):
        raw.encode("utf-8")
    text = path_text(raw)  # for display only (N1: test_store_names.py)
    text.encode("utf-8")
    assert text != raw
    assert path_text(os.fsdecode(b"/photos/bad\xfe.jpg")) != text  # distinct bytes stay distinct
    assert path_text("/photos/ok-é.jpg") == "/photos/ok-é.jpg"
    assert path_text(store.path) == str(store.path)

    store.record_files([record(raw, "sha-bad", probability=0.5, model_id="m")])
    assert list(store.files([raw])) == [raw]
    assert store.files([text]) == {}
    assert store.paths_for("sha-bad") == [raw]
    store.set_labels(["sha-bad"], "sfw")
    assert store.labelled_files()[0].path == raw


# -- labels --------------------------------------------------------------------------------


def test_set_change_clear_and_history(store):
    store.set_labels(["x"], "nsfw")
    assert labels_of(store) == {"x": "nsfw"}
    store.set_labels(["x"], "sfw")
    assert labels_of(store) == {"x": "sfw"}
    assert store.current_labels(["x"])["x"].source == "human"
    store.set_labels(["x"], None)
    assert labels_of(store) == {}
    assert store.current_labels(["x"]) == {}

    history = store.label_history("x")
    assert [e.label for e in history] == ["nsfw", "sfw", None]
    assert [e.id for e in history] == sorted(e.id for e in history)
    assert len({e.batch for e in history}) == 3
    store.set_labels(["x"], "nsfw", source="model")
    assert store.current_labels()["x"].source == "model"
    assert len(store.label_history("x")) == 4


def test_set_labels_skips_unchanged_images_and_returns_none_for_no_change(store):
    first = store.set_labels(["a", "b", "a"], "nsfw")
    assert first is not None
    assert event_count(store) == 2  # duplicates collapse to one event

    batch = store.set_labels(["a", "b", "c"], "nsfw")
    assert batch is not None and batch != first
    rows = store._conn.execute("SELECT sha256 FROM label_events WHERE batch = ?", [batch])
    assert [r[0] for r in rows] == ["c"]
    assert len(store.label_history("a")) == 1

    assert store.set_labels(["a", "b", "c"], "nsfw") is None
    assert store.set_labels(["never-labelled"], None) is None
    assert store.set_labels([], "sfw") is None
    assert event_count(store) == 3


@pytest.mark.parametrize("bad", ["NSFW", "maybe", "", 1])
def test_invalid_label_rejected(store, bad):
    with pytest.raises(ValueError, match="label"):
        store.set_labels(["a"], bad)
    assert event_count(store) == 0


def test_undo_batch_restores_previous_labels_and_appends(store):
    store.set_labels(["a"], "nsfw")
    store.set_labels(["b"], "sfw")
    before = labels_of(store)
    bulk = store.set_labels(["a", "b", "c"], "nsfw")  # a already nsfw: not part of the batch
    assert labels_of(store) == {"a": "nsfw", "b": "nsfw", "c": "nsfw"}
    events_before_undo = event_count(store)

    assert store.undo_batch(bulk) == 2
    assert labels_of(store) == before  # b back to sfw, c cleared, a untouched
    assert event_count(store) == events_before_undo + 2  # appended, nothing deleted
    assert [(e.label, e.source) for e in store.label_history("c")] == [
        ("nsfw", "human"),
        (None, "undo"),
    ]
    assert store.undo_batch("no-such-batch") == 0


def test_multi_level_undo_returns_to_the_start(store):
    store.set_labels(["a"], "nsfw")
    snapshots, batches = [labels_of(store)], []
    for shas, label in ((["a", "b", "c"], "sfw"), (["b", "d"], "nsfw"), (["a", "c", "d"], None)):
        batches.append(store.set_labels(shas, label))
        snapshots.append(labels_of(store))
    assert len({str(s) for s in snapshots}) == 4  # every batch changed something
    counts = [event_count(store)]
    for level in range(3, 0, -1):  # undo the newest batch first
        assert labels_of(store) == snapshots[level]
        store.undo_batch(batches[level - 1])
        assert labels_of(store) == snapshots[level - 1]
        counts.append(event_count(store))
    assert labels_of(store) == {"a": "nsfw"}
    assert counts == sorted(counts) and len(set(counts)) == 4  # history only grows


def test_labelled_files_joins_the_newest_path(store, monkeypatch):
    clock = itertools.count(1_000)
    monkeypatch.setattr(store_module, "_now", lambda: float(next(clock)))
    store.record_files([record("/old/x.jpg", "x")])
    store.record_files([record("/new/x.jpg", "x"), record("/y.jpg", "y")])
    store.record_files([record("/z.jpg", "z")])
    store.set_labels(["x"], "nsfw")
    store.set_labels(["y", "gone"], "sfw")
    store.set_labels(["z"], "sfw")
    store.set_labels(["z"], None)

    rows = {r.sha256: r for r in store.labelled_files()}
    assert set(rows) == {"x", "y", "gone"}
    assert rows["x"].path == "/new/x.jpg"
    assert rows["x"].label == "nsfw"
    assert rows["y"].path == "/y.jpg"
    assert rows["gone"].path is None
    assert rows["gone"].source == "human"


def test_labelled_files_empty(store):
    assert store.labelled_files() == []


# -- models --------------------------------------------------------------------------------


def test_models_first_added_is_active_and_set_active_switches(store):
    assert store.active_model() is None
    store.add_model(
        "m1",
        "builtin",
        threshold=0.5,
        metrics={"auc": 0.9},
        preprocessing={"size": 224},
        meta={"note": "x"},
    )
    assert store.active_model().id == "m1"
    store.add_model("m2", "onnx", threshold=0.4, path="/models/m2.onnx")
    assert store.active_model().id == "m1"  # a second model does not take over
    store.add_model("m3", "onnx", threshold=0.3, activate=True)
    assert store.active_model().id == "m3"

    store.set_active("m2")
    active = [m.id for m in store.models() if m.active]
    assert active == ["m2"]
    m1 = store.model("m1")
    assert (m1.metrics, m1.preprocessing) == ({"auc": 0.9}, {"size": 224})
    # the threshold it was registered with is kept beside the given meta (for --reset)
    assert m1.meta == {"note": "x", "registered_threshold": 0.5}
    assert store.model("m2").path == "/models/m2.onnx"
    assert store.model("nope") is None
    assert [m.id for m in store.models()] == ["m1", "m2", "m3"]


def test_set_active_unknown_model_is_a_store_error(store):
    store.add_model("m1", "builtin", threshold=0.5)
    with pytest.raises(StoreError, match="nope") as info:
        store.set_active("nope")
    assert "m1" in str(info.value)  # names the known models
    assert store.active_model().id == "m1"


def test_set_threshold_bounds(store):
    store.add_model("m1", "builtin", threshold=0.5)
    store.set_threshold("m1", 0.7)
    assert store.model("m1").threshold == pytest.approx(0.7)
    for ok in (0.0, 1.0):
        store.set_threshold("m1", ok)
        assert store.model("m1").threshold == ok
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            store.set_threshold("m1", bad)
    assert store.model("m1").threshold == 1.0


def test_label_constraint_holds_in_sql(store):
    """The CHECK constraint backs up the Python validation for any other writer."""
    with pytest.raises(sqlite3.IntegrityError):
        store._conn.execute(
            "INSERT INTO label_events (sha256, label, source, created_at) VALUES ('a', 'x', 'h', 0)"
        )
