"""Labelled samples from the store, a stratified split by near-duplicate group, the datasets."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.images import check_structure, load_image, read_bytes
from nsfw_tui.core.preprocess import Preprocessing
from nsfw_tui.core.scan import CONTENT_ERRORS
from nsfw_tui.core.store import FileRow, Store
from nsfw_tui.core.video import VIDEO_FORMATS

from .errors import NotEnoughLabelsError

log = logging.getLogger(__name__)

# Four per class in train is the least that still gives every class a few gradient steps
# per epoch; one per class in val is the least that makes AUROC and the recall threshold
# defined. With the default 80/20 split that means five labelled images of each class.
MIN_TRAIN_PER_CLASS = 4
MIN_VAL_PER_CLASS = 1
CLASS_NAMES = {1: "nsfw", 0: "sfw"}


@dataclass(frozen=True)
class Sample:
    sha256: str
    path: str
    label: int  # 1 nsfw, 0 sfw


# -- samples from the store --------------------------------------------------------------


def labelled_samples(
    store: Store, folder: str | os.PathLike | None = None
) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Images with a current label (any source) and a file that still holds all their bytes.

    Each image is taken from its newest sighting, else from any other known path. Every
    file is read once and checked whole (P12), so that the skipped images are known, counted
    and named before the first epoch rather than met again in each one; a file whose size and
    mtime still match the store's row is not re-hashed, one that changed is kept only if its
    content is still the labelled image. ``folder`` keeps only paths under it. Returns
    (samples sorted by hash, skipped [(path or hash, reason)]).
    """
    labels = store.current_labels()
    newest = {row.sha256: row.path for row in store.labelled_files() if row.path}
    root = _Root(folder) if folder is not None else None
    todo: list[tuple[str, int, list[str], dict[str, FileRow]]] = []
    skipped: list[tuple[str, str]] = []
    for sha, event in sorted(labels.items()):
        first = newest.get(sha)
        others = [p for p in store.paths_for(sha) if p != first] if first else store.paths_for(sha)
        candidates = [p for p in [first, *sorted(others)] if p]
        if root is not None:
            candidates = [p for p in candidates if root.holds(p)]
            if not candidates:
                continue  # labelled, but not in the folder asked for: not a problem
        if not candidates:
            skipped.append((sha, "no known file holds this image (never scanned, or forgotten)"))
            continue
        todo.append((sha, 1 if event.label == "nsfw" else 0, candidates, store.files(candidates)))
    # hashlib, zlib and numpy do their work without the GIL: threads overlap reads and checks
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(lambda job: _first_whole(*job), todo))
    samples = [f for f in found if isinstance(f, Sample)]
    skipped += [f for f in found if not isinstance(f, Sample)]
    return samples, skipped


def _first_whole(
    sha: str, label: int, candidates: list[str], rows: dict[str, FileRow]
) -> Sample | tuple[str, str]:
    """The first candidate that holds the whole image, else (first candidate, why not)."""
    reason = ""
    for path in candidates:
        reason = _confirm(path, sha, rows.get(path))
        if not reason:
            return Sample(sha, path, label)
    return candidates[0], reason


class _Root:
    """A folder filter that accepts a path under it as written or with symlinks resolved."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.forms = {Path(os.path.abspath(folder)), Path(os.path.realpath(folder))}

    def holds(self, path: str) -> bool:
        forms = {Path(os.path.abspath(path)), Path(os.path.realpath(path))}
        return any(p.is_relative_to(root) for p in forms for root in self.forms)


def _confirm(path: str, sha: str, row: FileRow | None) -> str:
    """Empty when ``path`` still holds the whole image ``sha``; else why not."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "file missing"
    except (OSError, ValueError) as exc:
        return f"cannot read file: {getattr(exc, 'strerror', None) or exc}"
    unchanged = row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns
    if unchanged and row.error_kind in CONTENT_ERRORS:
        return f"{row.error_kind}: {row.error}"  # a scan or an import already found why
    try:
        data = read_bytes(path)
        if not unchanged and hashlib.sha256(data).hexdigest() != sha:
            return "file changed since it was labelled (different content now)"
        fmt = check_structure(data)
    except ImageError as exc:
        return f"{exc.kind}: {exc.reason}"
    if fmt in VIDEO_FORMATS:
        return f"video: training reads still images ({fmt} is scored on its frames, not trained on)"
    return ""


# -- split and checks ---------------------------------------------------------------------


def split_samples(
    samples: Iterable[Sample],
    val_fraction: float,
    seed: int,
    groups: Mapping[str, str] | None = None,
) -> tuple[list[Sample], list[Sample]]:
    """Stratified train/val split by content hash and near-duplicate group, seeded.

    One sample per hash is kept, so duplicate content cannot sit on both sides (M8); with
    ``groups`` (image hash -> its near-duplicate group's key, core.dupes.Groups.keys) a
    whole group goes to one side, so a resized or recompressed copy cannot either. A group
    counts under its majority label. Each class's groups are ordered by a seeded hash of the
    group's key and taken for val until it holds its share: the result depends neither on
    input order nor on the global random state, and a newly labelled image moves no other
    group across the split.
    """
    unique: dict[str, Sample] = {}
    for sample in samples:
        unique.setdefault(sample.sha256, sample)
    units: dict[str, list[Sample]] = {}
    for sha, sample in unique.items():
        key = groups.get(sha, sha) if groups else sha
        units.setdefault(key, []).append(sample)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in (1, 0):
        mine = sorted(
            (key for key, members in units.items() if _majority(members) == label),
            key=lambda key: _rank(seed, key),
        )
        n_val = _val_count(sum(len(units[key]) for key in mine), val_fraction)
        taken = 0
        for i, key in enumerate(mine):
            # the last group stays in train, so a class is never all in val
            if taken < n_val and i < len(mine) - 1:
                val.extend(units[key])
                taken += len(units[key])
            else:
                train.extend(units[key])
    return sorted(train, key=_by_hash), sorted(val, key=_by_hash)


def _majority(members: Sequence[Sample]) -> int:
    """A group's label for stratification: the commoner one, NSFW on a tie."""
    nsfw = sum(s.label for s in members)
    return 1 if 2 * nsfw >= len(members) else 0


def near_duplicate_keys(store: Store, samples: Sequence[Sample], dupes_cfg: Any) -> dict[str, str]:
    """Each sample's near-duplicate group key (core.dupes), by ``dupes_cfg``'s settings."""
    from nsfw_tui.core.dupes import near_duplicates

    groups = near_duplicates(
        store,
        [s.sha256 for s in samples],
        float(dupes_cfg.threshold),
        int(dupes_cfg.phash_distance),
        paths={s.sha256: s.path for s in samples},
    )
    return groups.keys()


def _by_hash(sample: Sample) -> str:
    return sample.sha256


def _rank(seed: int, sha: str) -> str:
    return hashlib.sha256(f"{seed}:{sha}".encode()).hexdigest()


def _val_count(n: int, fraction: float) -> int:
    if n < 2 or fraction <= 0:
        return 0
    # at least one on each side, so a small class still shows up in both
    return min(max(int(n * fraction + 0.5), 1), n - 1)


def class_counts(samples: Sequence[Sample]) -> dict[str, int]:
    return {
        name: sum(1 for s in samples if s.label == label) for label, name in CLASS_NAMES.items()
    }


def check_counts(train: Sequence[Sample], val: Sequence[Sample]) -> None:
    """Raise NotEnoughLabelsError unless both classes have enough images on both sides."""
    tr, va = class_counts(train), class_counts(val)
    total = {name: tr[name] + va[name] for name in tr}
    need = MIN_TRAIN_PER_CLASS + MIN_VAL_PER_CLASS
    if not any(total.values()):
        raise NotEnoughLabelsError(
            "no labelled images to train on: label some in the review screen or with "
            "`nsfw-tui import DIR --label nsfw|sfw`"
        )
    missing = [name for name, n in total.items() if n == 0]
    if missing:
        present = next(name for name, n in total.items() if n)
        raise NotEnoughLabelsError(
            f"all {total[present]} labelled images are {present}; training needs both nsfw "
            f"and sfw examples (at least {need} of each)"
        )
    short = [
        name for name in total if tr[name] < MIN_TRAIN_PER_CLASS or va[name] < MIN_VAL_PER_CLASS
    ]
    if short:
        have = ", ".join(f"{n} {total[n]} ({tr[n]} train, {va[n]} val)" for n in total)
        raise NotEnoughLabelsError(
            f"too few labelled {' and '.join(short)} images: {have}; training needs at least "
            f"{MIN_TRAIN_PER_CLASS} of each class in train and {MIN_VAL_PER_CLASS} in "
            f"validation ({need} of each with a data.split.val_fraction of about 0.2)"
        )


# -- transforms and datasets ---------------------------------------------------------------


def input_size(data_cfg: Any) -> tuple[int, int]:
    h, w = (int(v) for v in data_cfg.input_size)
    return h, w


def val_preprocessing(data_cfg: Any) -> Preprocessing:
    """The validation (and inference) recipe: stretch to the input size, normalise.

    The checkpoint stores exactly this, so the scorer sees what validation saw.
    """
    return Preprocessing(
        resize=input_size(data_cfg),
        resize_mode="stretch",
        layout="NCHW",
        channel_order="RGB",
        scale=1 / 255,
        mean=tuple(float(v) for v in data_cfg.mean),
        std=tuple(float(v) for v in data_cfg.std),
    )


def train_transform(data_cfg: Any) -> Callable[[Any], Any]:
    """The augmentations of data.augment, PIL image in, PIL image of the input size out."""
    from torchvision.transforms import v2

    aug = data_cfg.augment
    jitter = aug.color_jitter
    blur = aug.gaussian_blur
    return v2.Compose(
        [
            v2.RandomResizedCrop(
                input_size(data_cfg), scale=tuple(aug.random_resized_crop.scale), antialias=True
            ),
            v2.RandomHorizontalFlip(float(aug.horizontal_flip)),
            v2.RandomRotation(float(aug.rotation_degrees)),
            v2.ColorJitter(
                brightness=float(jitter.brightness),
                contrast=float(jitter.contrast),
                saturation=float(jitter.saturation),
                hue=float(jitter.hue),
            ),
            v2.RandomApply(
                [v2.GaussianBlur(int(blur.kernel_size), sigma=tuple(blur.sigma))],
                p=float(blur.p),
            ),
        ]
    )


class ImageDataset:
    """Samples decoded by the project's loader into normalised CHW float tensors.

    Items are (image, label, ok). A file that fails to decode gives ok=False and a blank
    image, which the loop drops: one bad file must not end a long run.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocessing: Preprocessing,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.preprocessing = preprocessing
        self.transform = transform
        self.failed: dict[str, str] = {}
        """Files that passed the check before training and still failed to decode."""

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        import torch

        sample = self.samples[index]
        ok = True
        try:
            # draft: JPEG decodes at the smallest DCT scale still at least the input size
            loaded = load_image(sample.path, draft=self.preprocessing.draft_size(), max_frames=1)
            image = loaded.frames[0]
            if self.transform is not None:
                pixels = np.asarray(self.transform(image).convert("RGB"), dtype=np.uint8)
            else:
                pixels = self.preprocessing.pixels(image)
        except ImageError as exc:
            # every epoch meets the same file again: say so once (per loader process)
            if sample.path not in self.failed:
                self.failed[sample.path] = str(exc)
                log.warning("skipping %s in training: %s", sample.path, exc)
            h, w = self.preprocessing.input_size
            pixels = np.zeros((h, w, 3), dtype=np.uint8)
            ok = False
        tensor = torch.from_numpy(self.preprocessing.tensor(pixels[None])[0])
        return tensor, torch.tensor(float(sample.label)), torch.tensor(ok)
