"""The `useful` order on a set where it is known, suspects among planted wrong labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.curation import USEFUL_ORDER, constructed_folder
from support.imagegen import family_image, save
from support.tui import FAKE_ID, prepare_home

from nsfw_tui.core import adapt as A
from nsfw_tui.core.config import load_config
from nsfw_tui.core.curation import Curation, closeness, load_curation, spread, suspects
from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.review import Review, Row, load_review
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.core.scorers import ensure_builtin, load_builtin
from nsfw_tui.core.store import Store


def _review(tmp_path: Path):
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    constructed_folder(tmp_path / "photos", home)
    with Store.open(home.store_path) as store:
        review, pending = load_review(tmp_path / "photos", store, FAKE_ID, 0.5)
        assert not pending
        paths = {r.sha256: r.path for r in review.rows}
        review.curation = load_curation(store, paths, FAKE_ID, 0.94, 12)
    return home, review


def test_useful_order_is_the_constructed_one(tmp_path):
    _, review = _review(tmp_path)
    review.sort = "useful"
    assert [r.name for r in review.refresh_view()] == USEFUL_ORDER
    by_name = {r.name: r for r in review.rows}
    assert review.usefulness(by_name["best.png"]) == pytest.approx(3.0)
    assert review.usefulness(by_name["like.png"]) == pytest.approx(1.0, abs=1e-3)
    assert review.usefulness(by_name["labelled.png"]) is None
    # a label on best makes its twin like the labelled: the twin falls behind near
    best = by_name["best.png"]
    best.label = "nsfw"
    review.curation.update_novelty({r.sha256 for r in review.rows if r.label})
    assert [r.name for r in review.refresh_view()][:3] == ["near.png", "twin.png", "far.png"]
    # the duplicates filter: one row per group (like shares the labelled image's features)
    review.filter = "duplicates"
    view = review.refresh_view()
    assert all(review.caption(r) == f"[2] {r.rel}" for r in view)
    groups = sorted(sorted(m.name for m in review.members(r)) for r in view)
    assert groups == [["best.png", "twin.png"], ["labelled.png", "like.png"]]


def test_novelty_updated_label_by_label_equals_from_scratch(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.random((60, 1024)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    shas = [f"{i:03d}" for i in range(60)]

    def fresh(labelled):
        c = Curation(vectors=v.astype(np.float16), index={s: i for i, s in enumerate(shas)})
        c.update_novelty(labelled)
        return c.novelty

    c = Curation(vectors=v.astype(np.float16), index={s: i for i, s in enumerate(shas)})
    c.update_novelty(set())
    assert set(c.novelty.values()) == {2.0}  # nothing labelled: everything is new
    for n in (5, 12, 30):
        c.update_novelty(set(shas[:n]))
        assert c.novelty == pytest.approx(fresh(set(shas[:n])), abs=1e-5)
    c.update_novelty(set(shas[:3]))  # labels taken back: computed again
    assert c.novelty == pytest.approx(fresh(set(shas[:3])), abs=1e-5)
    assert c.novelty["000"] == pytest.approx(0.0, abs=1e-3)


def test_spread_keeps_group_members_apart_in_the_top():
    ranked = ["a1", "a2", "a3", "b1", "c1", "b2"]
    out = spread(ranked, lambda x: x[0], top=5)
    assert out[:5] == ["a1", "b1", "a2", "c1", "a3"] and sorted(out) == sorted(ranked)
    assert all(out[i][0] != out[i + 1][0] for i in range(4))


def test_closeness_is_taken_in_log_odds():
    assert closeness(0.2, 0.2) == 1.0 and closeness(0.5, 0.5) == 1.0
    # 0.3 is nearer 0.2's call boundary than 0.05 is, though both are 0.1-0.15 away
    assert closeness(0.3, 0.2) > closeness(0.1, 0.2) > closeness(0.05, 0.2)


FAMILY_LABEL = {"blob": "sfw", "dark": "nsfw", "photo": "sfw"}


@pytest.mark.slow
def test_suspects_are_the_planted_wrong_labels(tmp_path):
    """Real images, features and adaptation: three labels flipped on purpose come out first."""
    home = resolve_home(tmp_path / "home")
    paths = {}
    for family in FAMILY_LABEL:
        for i in range(14):
            paths[save(family_image(family, i), tmp_path / "p" / f"{family}_{i}.png")] = family
    planted = {"dark_3.png", "blob_5.png", "photo_7.png"}
    with Store.open(home.store_path) as store:
        ensure_builtin(store)
        result = scan_folder(tmp_path / "p", load_builtin(), store, ScanOptions(workers=0))
        sha_of = {Path(i.path).name: i.sha256 for i in result.items}
        labels = {}
        for path, family in paths.items():
            label = FAMILY_LABEL[family]
            if path.name in planted:
                label = "sfw" if label == "nsfw" else "nsfw"
            labels[sha_of[path.name]] = label
        for value in ("nsfw", "sfw"):
            store.set_labels([s for s, lab in labels.items() if lab == value], value)
        A.adapt(store, home.models_dir, A.Settings.from_config(load_config("adapt")))
        curation = load_curation(store, {s: "" for s in sha_of.values()}, "open_nsfw", 0.94, 12)
    assert curation.oof_model and len(curation.oof) == len(labels)
    found = suspects(labels, curation.oof)
    name_of = {s: n for n, s in sha_of.items()}
    ranked = [name_of[s] for s in sorted(found, key=found.get, reverse=True)]
    print(f"\nsuspects, most first: {ranked}")
    assert set(ranked[:3]) == planted
    assert len(ranked) <= 6, "a few suspects to check, not the whole set"


def test_useful_centres_on_the_active_models_threshold_not_on_half():
    rows = [
        Row(f"/x/{name}", name, "", sha256=name * 8, probability=p)
        for name, p in [("half", 0.5), ("at", 0.21), ("low", 0.02), ("high", 0.95)]
    ]
    review = Review(Path("/x"), rows, threshold=0.2, model_id="open_nsfw", sort="useful")
    assert [r.name for r in review.view] == ["at", "half", "low", "high"]
    review.move_threshold(0.3)  # the order follows the threshold
    assert review.view[0].name == "half"
