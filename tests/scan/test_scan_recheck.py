"""After the upgrade to schema 6, scores cached by a loader without the completeness check are
trusted only once the file has been read again: a zero-tailed JPEG scored SFW then becomes
an error, a whole file keeps its score and is not read a third time (P12)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from support.imagegen import photo
from support.legacy import legacy_photos, schema_5_store, sha_of

from nsfw_tui.core.adapt import labelled_without_features
from nsfw_tui.core.adapt_head import DIM
from nsfw_tui.core.decode_pool import decode_path
from nsfw_tui.core.evaluate import labelled_scores
from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.review import load_review
from nsfw_tui.core.scan import ScanOptions, scan_files, scan_folder
from nsfw_tui.core.scorers import BUILTIN_ID, ScoreBatch
from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.core.structure import CHECK_VERSION

MODEL = "fake-grey"
OLD_WHOLE, OLD_PARTIAL = 0.123456, 0.01  # what the old version cached: no model here gives them


class GreyScorer:
    """A fake model: every frame scores its mean brightness; counts the frames it saw."""

    id = MODEL
    preprocessing = IMAGENET(32)
    default_threshold = 0.5

    def __init__(self) -> None:
        self.frames = 0

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        self.frames += len(pixels)
        return ScoreBatch(pixels.astype(np.float32).mean(axis=(1, 2, 3)) / 255.0, None)


class Reads:
    """A decoder that counts the files it reads (inline: ``workers=0``)."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    def __call__(self, path, spec, use_draft, max_frames):
        self.count[os.path.basename(path)] += 1
        return decode_path(path, spec, use_draft, max_frames)


@pytest.fixture
def upgraded(tmp_path) -> tuple[Path, Store]:
    """``photos/`` with a whole and a zero-tailed JPEG and a known-broken PNG, all recorded by a
    schema-5 store (both JPEGs scored SFW, the zero-tailed one labelled by a person), opened
    by this version."""
    folder = tmp_path / "photos"
    whole, partial, broken = legacy_photos(folder)
    schema_5_store(
        tmp_path / "store.db",
        MODEL,
        {whole: OLD_WHOLE, partial: OLD_PARTIAL},
        errors={broken: ("truncated", "PNG file is truncated")},
        labels={partial: "sfw"},
    )
    with Store.open(tmp_path / "store.db") as store:
        yield folder, store


def by_name(items) -> dict:
    return {os.path.basename(i.path): i for i in items}


def test_scan_reads_each_unchecked_file_once_and_refuses_the_zero_tailed_one(upgraded):
    folder, store = upgraded
    scorer, reads = GreyScorer(), Reads()
    options = ScanOptions(workers=0, decoder=reads)
    labels_before = store.label_history(sha_of(folder / "partial.jpg"))

    first = by_name(scan_folder(folder, scorer, store, options).items)
    assert reads.count == {"whole.jpg": 1, "partial.jpg": 1}, "the old error is not read again"
    assert first["partial.jpg"].error_kind == "truncated"
    assert first["partial.jpg"].probability is None
    assert first["whole.jpg"].probability == OLD_WHOLE and first["whole.jpg"].cached
    assert first["broken.png"].error_kind == "truncated" and first["broken.png"].cached
    assert scorer.frames == 0, "a whole file keeps its score: read again, not re-scored"
    assert store.predictions(MODEL) == {sha_of(folder / "whole.jpg"): OLD_WHOLE}
    # found as recorded, the whole file's row stays as it was (the watch log's recovery
    # takes a row written since its last line for a decision it lacks)
    rewritten = {os.path.basename(r.path) for r in store.files_seen_since(str(folder), 2.0)}
    assert rewritten == {"partial.jpg"}

    second = scan_folder(folder, scorer, store, options)
    assert reads.count == {"whole.jpg": 1, "partial.jpg": 1}, "read once more, not every scan"
    assert second.reused == 3 and second.scored == 0
    again = by_name(second.items)
    assert (
        again["partial.jpg"].error_kind == "truncated" and again["partial.jpg"].probability is None
    )
    assert again["whole.jpg"].probability == OLD_WHOLE
    assert store.label_history(sha_of(folder / "partial.jpg")) == labels_before


def test_review_load_does_not_show_an_unchecked_score_until_it_is_read_again(upgraded):
    folder, store = upgraded
    review, pending = load_review(folder, store, MODEL, 0.5)
    assert sorted(os.path.basename(p) for p in pending) == ["partial.jpg", "whole.jpg"]
    rows = {r.name: r for r in review.rows}
    assert rows["partial.jpg"].probability is None and rows["partial.jpg"].label == "sfw"
    assert rows["whole.jpg"].probability is None
    assert rows["broken.png"].error.startswith("truncated")

    # what the review screen does next: its pending files through the one pipeline
    reads = Reads()
    result = scan_files(pending, GreyScorer(), store, ScanOptions(workers=0, decoder=reads))
    review.apply_scores(result.items)
    assert (
        rows["partial.jpg"].error.startswith("truncated") and rows["partial.jpg"].status == "error"
    )
    assert rows["whole.jpg"].probability == OLD_WHOLE

    review, pending = load_review(folder, store, MODEL, 0.5)
    assert pending == [] and reads.count == {"whole.jpg": 1, "partial.jpg": 1}
    rows = {r.name: r for r in review.rows}
    assert rows["partial.jpg"].error.startswith("truncated: JPEG file is incomplete")
    assert rows["partial.jpg"].probability is None and rows["partial.jpg"].label == "sfw"
    assert rows["whole.jpg"].probability == OLD_WHOLE


def test_evaluation_does_not_count_an_unchecked_score(upgraded):
    folder, store = upgraded
    store.set_labels([sha_of(folder / "whole.jpg")], "sfw")
    reads = Reads()
    data = labelled_scores(store, GreyScorer(), options=ScanOptions(workers=0, decoder=reads))
    assert reads.count == {"whole.jpg": 1, "partial.jpg": 1}
    assert data.shas == [sha_of(folder / "whole.jpg")] and data.scores == [OLD_WHOLE]
    assert data.skipped == 1  # the zero-tailed one: labelled, but it has no score


def test_adaptation_scans_a_labelled_image_whose_features_an_older_check_cached(tmp_path):
    image = tmp_path / "a.jpg"
    photo((64, 48), 2).save(image)
    st, sha = image.stat(), sha_of(image)
    feats = np.ones((1, DIM), dtype=np.float32)  # as the built-in network pools them

    def record(**checked) -> ScoreRecord:
        return ScoreRecord(
            str(image), st.st_size, st.st_mtime_ns, sha, 0.1, BUILTIN_ID, features=feats, **checked
        )

    with Store.open(tmp_path / "store.db") as store:
        store.record_files([record()])  # as before schema 6: no check claimed
        store.set_labels([sha], "sfw")
        assert labelled_without_features(store) == [str(image)]
        store.record_files([record(checked=CHECK_VERSION)])
        assert labelled_without_features(store) == []
