"""Label batches and their undo: each undo restores what was there before, and steps back."""

from __future__ import annotations


def test_each_undo_steps_one_batch_further_back(store):
    first = store.set_labels(["a", "b"], "nsfw", source="import")
    second = store.set_labels(["a", "c"], "sfw")
    assert store.newest_batch().batch == second
    preview = store.undo_preview(second)
    assert [(c.sha256, c.current, c.restored) for c in preview] == [
        ("a", "sfw", "nsfw"),
        ("c", "sfw", None),
    ]
    assert store.undo_batch(second) == 2
    assert {s: e.label for s, e in store.current_labels().items()} == {"a": "nsfw", "b": "nsfw"}
    assert store.newest_batch().batch == first  # the undo and what it undid are skipped
    store.undo_batch(first)
    assert store.current_labels() == {} and store.newest_batch() is None


def test_an_undo_written_before_undos_named_their_batch_is_never_undone(store):
    first = store.set_labels(["a"], "nsfw", source="import")
    with store.write():
        store._conn.execute(
            "INSERT INTO label_events (sha256, label, source, batch, created_at) "
            "VALUES ('a', NULL, 'undo', 'legacy0000', 1.0)"
        )
    assert store.newest_batch().batch == first
