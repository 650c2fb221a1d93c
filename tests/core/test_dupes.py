"""Near-duplicate groups: the measured default threshold, the perceptual hash, the grouping."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from support.imagegen import grouping_figures, variant_folder

from nsfw_tui.core.adapt_features import Features
from nsfw_tui.core.config_schema import DupesConfig
from nsfw_tui.core.dupes import (
    Groups,
    components,
    file_groups,
    group_vectors,
    near_duplicates,
    similar_pairs,
    unit_vectors,
)
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.core.scorers import load_builtin
from nsfw_tui.core.store import ScoreRecord

DEFAULT = DupesConfig()


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_default_threshold_finds_variants_and_merges_no_two_scenes(tmp_path, store):
    """The default, measured: 30 structured scenes, each resized, JPEG q40, 5% and 10% crops."""
    truth = variant_folder(tmp_path / "v", range(1000, 1030))
    result = scan_folder(tmp_path / "v", load_builtin(), store, ScanOptions(workers=0))
    sha_of = {i.path: i.sha256 for i in result.items}
    assert len(sha_of) == 150 and all(sha_of.values())

    def figures(threshold: float) -> tuple[float, int]:
        groups = near_duplicates(store, list(sha_of.values()), threshold, DEFAULT.phash_distance)
        assert groups.by_features == 150  # every image compared by its cached features
        return grouping_figures({p: groups.of(sha_of[str(p)]) for p in truth}, truth)

    recall, merges = figures(DEFAULT.threshold)
    loose_recall, loose_merges = figures(0.90)
    print(f"\nthreshold {DEFAULT.threshold}: recall {recall:.3f}, false merges {merges} of 30")
    print(f"threshold 0.90: recall {loose_recall:.3f}, false merges {loose_merges} of 30")
    assert recall >= 0.95
    assert merges == 0
    assert loose_merges > 0, "a looser threshold merges different scenes: the default matters"


def test_perceptual_hash_groups_images_without_features(tmp_path, store):
    truth = variant_folder(tmp_path / "v", range(2000, 2012))
    paths = {_sha(p): str(p) for p in truth}
    groups = near_duplicates(
        store, list(paths), DEFAULT.threshold, DEFAULT.phash_distance, paths=paths
    )
    assert groups.by_hash == len(truth) and groups.by_features == 0
    group_of = {p: groups.of(_sha(p)) for p in truth}
    recall, merges = grouping_figures(group_of, truth)
    print(f"\nphash <= {DEFAULT.phash_distance} bits: recall {recall:.3f}, false merges {merges}")
    assert merges == 0
    # resized and recompressed copies always; crops move the grid the hash is taken on
    for p, seed in truth.items():
        if p.stem.endswith(("_resize", "_jpeg40")):
            assert group_of[p] == group_of[tmp_path / "v" / f"s{seed}.png"], p.name
    assert recall >= 0.6


def test_unreadable_images_stay_alone_and_are_listed(tmp_path, store):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    groups = near_duplicates(store, ["a" * 64, "b" * 64], 0.9, 12, paths={"a" * 64: str(bad)})
    assert sorted(groups.unchecked) == ["a" * 64, "b" * 64]
    assert groups.of("a" * 64) != groups.of("b" * 64)
    assert groups.members() == []


def test_cached_features_group_by_cosine_in_a_real_store(tmp_path, store):
    rng = np.random.default_rng(0)
    base = rng.random((3, 1024)).astype(np.float32)
    vectors = {
        "a": base[0],
        "a2": base[0] + 0.01 * rng.random(1024),  # a near copy
        "b": base[1],
        "c": -base[2],  # unlike all
    }
    records = [
        ScoreRecord(
            f"/x/{k}.jpg", 1, 1, k * 32, 0.1, "open_nsfw", features=np.stack([v, v * 1.5])
        )  # two frames: the image's vector is their mean
        for k, v in vectors.items()
    ]
    store.record_files(records)
    shas = [k * 32 for k in vectors]
    cos_ab = float(base[0] @ base[1] / np.linalg.norm(base[0]) / np.linalg.norm(base[1]))
    groups = near_duplicates(store, shas, (cos_ab + 0.999) / 2, 12)
    assert groups.members() == [sorted(["a" * 32, "a2" * 32])]
    merged = near_duplicates(store, shas, cos_ab - 0.001, 12)  # now a and b are close enough
    assert merged.members() == [sorted(["a" * 32, "a2" * 32, "b" * 32])]


def _pairs(vectors: np.ndarray, block: int) -> list[tuple[int, int]]:
    return sorted(
        (int(i), int(j))
        for left, right in similar_pairs(vectors, 0.95, block=block)
        for i, j in zip(left, right, strict=True)
    )


def test_blocks_find_the_same_pairs_as_one_product():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(50, 16)).astype(np.float32)
    v[10:20] = v[0] + 0.05 * rng.normal(size=(10, 16))  # one chained cluster
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v16 = v.astype(np.float16)
    whole, small = _pairs(v16, 64), _pairs(v16, 7)
    assert whole == small and len(whole) >= 10
    assert all(i < j for i, j in whole)
    groups = group_vectors([f"{i:02d}" for i in range(50)], v16, 0.95)
    assert len({groups.of(f"{i:02d}") for i in [0, *range(10, 20)]}) == 1


def test_components_chain_pairs():
    pairs = iter([(np.array([0, 2]), np.array([1, 3])), (np.array([1]), np.array([2]))])
    assert components(6, pairs).tolist() == [0, 0, 0, 0, 1, 2]


def test_unit_vectors_average_frames():
    frames = np.array([[1, 0], [0, 1], [3, 4]], dtype=np.float16)
    f = Features(["x", "y"], frames, np.array([0, 0, 1]))
    out = unit_vectors(f).astype(np.float32)
    assert np.allclose(out, [[0.7071, 0.7071], [0.6, 0.8]], atol=1e-3)


def test_file_groups_keep_exact_copies_together_and_drop_singletons():
    groups = Groups(["a", "b", "c"], np.array([0, 0, 1]), by_features=3)
    paths = {"a": ["/1.jpg"], "b": ["/2.jpg"], "c": ["/3.jpg"], "d": ["/4.jpg", "/5.jpg"]}
    found = file_groups(groups, paths)
    assert [(g.similar_by, [p for p, _ in g.files]) for g in found] == [
        ("features", ["/1.jpg", "/2.jpg"]),
        ("hash", ["/4.jpg", "/5.jpg"]),
    ]


def _feature_like(n: int, seed: int) -> np.ndarray:
    """Unit float16 vectors shaped like pooled ReLU features: low-rank, non-negative, noisy,
    with one in ten a near copy of another (cosine about 0.97-0.99)."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(n, 32)) @ rng.normal(size=(32, 256)) / 6, 0.0)
    x += np.abs(rng.normal(0, 0.3, size=x.shape))
    copies = rng.choice(n, n // 10, replace=False)
    x[copies] = x[rng.integers(0, n, n // 10)] + rng.normal(0, 0.05, (n // 10, 256))
    x = np.maximum(x, 0.0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


@pytest.mark.parametrize("threshold", [0.97, 0.94, 0.8])
def test_the_projected_first_pass_finds_exactly_the_brute_force_pairs(threshold):
    v = _feature_like(1500, seed=3)

    def pairs(project: int) -> set[tuple[int, int]]:
        found = similar_pairs(v, threshold, block=256, project=project)
        return {(int(i), int(j)) for a, b in found for i, j in zip(a, b, strict=True)}

    brute = pairs(0)
    assert len(brute) >= 100  # the planted copies at least
    # a near-tie at float32 rounding may fall either way: none here
    for dims in (8, 32):  # 8 directions leave a large rest: the blocks fall back to products
        assert pairs(dims) == brute
