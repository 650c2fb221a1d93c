"""The train/validation split keeps a near-duplicate group on one side, not only exact copies."""

from __future__ import annotations

import hashlib

from support.imagegen import variant_folder

from nsfw_tui.core.config import load_config
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.core.scorers import load_builtin
from trainer import data as tdata


def _sides(train, val, truth_of) -> dict[int, set[str]]:
    sides: dict[int, set[str]] = {}
    for side, samples in (("train", train), ("val", val)):
        for s in samples:
            sides.setdefault(truth_of[s.sha256], set()).add(side)
    return sides


def test_groups_go_whole_to_one_side_and_the_split_stays_stratified():
    samples, group_of, truth = [], {}, {}
    for g in range(40):  # 40 groups of 3 near copies; the first 12 groups NSFW
        for c in range(3):
            sha = hashlib.sha256(f"{g}-{c}".encode()).hexdigest()
            samples.append(tdata.Sample(sha, f"/x/{g}-{c}.png", int(g < 12)))
            group_of[sha] = f"group-{g}"
            truth[sha] = g
    train, val = tdata.split_samples(samples, 0.2, 42, group_of)
    assert all(len(sides) == 1 for sides in _sides(train, val, truth).values())
    # 20% of 36 and of 84 images, rounded up to whole groups: 3 of 12 and 6 of 28 groups
    assert tdata.class_counts(val) == {"nsfw": 9, "sfw": 18}
    assert tdata.split_samples(samples[::-1], 0.2, 42, group_of) == (train, val)
    # without the groups, copies land on both sides: what the groups prevent
    plain = _sides(*tdata.split_samples(samples, 0.2, 42), truth)
    assert any(len(sides) == 2 for sides in plain.values())


def test_a_class_held_by_one_group_keeps_it_in_train():
    samples = [tdata.Sample(f"{i:064x}", f"/x/{i}", 1) for i in range(5)]
    samples += [tdata.Sample(f"{i + 10:064x}", f"/x/{i + 10}", 0) for i in range(5)]
    one = {s.sha256: "nsfw-group" for s in samples if s.label == 1}
    train, val = tdata.split_samples(samples, 0.2, 42, one)
    assert tdata.class_counts(train)["nsfw"] == 5 and tdata.class_counts(val)["nsfw"] == 0


def test_near_copies_found_from_the_store_stay_together(tmp_path, store):
    """Real files, scored by the built-in network: features for one folder, pHash for the other."""
    truth_paths = variant_folder(tmp_path / "a", range(4000, 4008))
    for path in [p for p in truth_paths if p.stem.endswith("crop10")]:
        path.unlink()  # the one kind the default may leave out (recall 0.99): not this test
        del truth_paths[path]
    scan_folder(tmp_path / "a", load_builtin(), store, ScanOptions(workers=0))
    hashed = variant_folder(tmp_path / "b", range(4100, 4104))  # never scanned: no features
    truth_paths.update({p: seed for p, seed in hashed.items() if "crop" not in p.stem})
    samples, truth = [], {}
    for path, seed in truth_paths.items():
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        samples.append(tdata.Sample(sha, str(path), int(seed % 2 == 0)))
        truth[sha] = seed
    cfg = load_config().dupes
    keys = tdata.near_duplicate_keys(store, samples, cfg)
    assert len(set(keys.values())) == 12  # one group per scene
    for seed in range(20):  # different seeds give different sides over the groups
        train, val = tdata.split_samples(samples, 0.2, seed, keys)
        assert all(len(sides) == 1 for sides in _sides(train, val, truth).values())
        assert val and train
