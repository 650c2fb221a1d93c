"""Does the baseline CNN generalise? AUROC on unseen generated images, unpooled against pooled.

Trains the baseline with the default config_baseline (200x200, 10 epochs, its augmentation
and split) on the same few generated images: warm round blobs (nsfw) against cool bars
(sfw), both on grounds of any colour. "before" flattens the last 64x50x50 map into the
dense head (model.pool=0, the original's layout, about 20M dense weights); "after" is the
default, which max-pools it to a 4x4 grid first (model.pool=4, model.pool_kind=max). Each
model then scores a held-out set drawn with other seeds. --variant compares other layouts.

Run alone (nothing else on the cores):
    PYTHONUNBUFFERED=1 python benchmarks/baseline_generalisation.py
Options: --train N (images a family, default 48: 96 in all), --test N (held-out images a
family, default 200), --epochs E (default: the config's), --seed S (data seed, default 0),
--variant NAME=OVERRIDE[,OVERRIDE...] (repeatable; replaces the before/after pair), e.g.
    --variant flatten=model.pool=0 --variant avg4=model.pool_kind=avg --variant max8=model.pool=8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.trainer import cool_bars, warm_blobs, write_family

from nsfw_tui.core.config import load_config
from nsfw_tui.core.home import Home
from nsfw_tui.core.labels import import_folders
from nsfw_tui.core.metrics import auroc
from nsfw_tui.core.store import Store

# name -> config overrides; --variant NAME=OVERRIDE[,OVERRIDE...] replaces these
VARIANTS: dict[str, list[str]] = {
    "before (model.pool=0, flatten)": ["model.pool=0"],
    "after (model.pool=4, max)": ["model.pool=4", "model.pool_kind=max"],
}


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    if not name or not overrides:
        raise argparse.ArgumentTypeError(f"expected NAME=OVERRIDE[,OVERRIDE...], got {text!r}")
    return name, [o for o in overrides.split(",") if o]


def labelled_home(root: Path, per_family: int, seed: int) -> Path:
    """root/home with a store labelled from root/data/{nsfw,sfw}; returns the store path."""
    write_family(root / "data" / "nsfw", "warm_blobs", per_family, seed, size=128)
    write_family(root / "data" / "sfw", "cool_bars", per_family, seed + 1000, size=128)
    home = root / "home"
    (home / "models").mkdir(parents=True)
    with Store.open(home / "store.db") as store:
        import_folders(store, [(root / "data" / "nsfw", "nsfw"), (root / "data" / "sfw", "sfw")])
    return home / "store.db"


def held_out(per_family: int, seed: int) -> tuple[list, list[int]]:
    """Images neither run saw (seeds far from the training ones), with their labels."""
    rng_nsfw, rng_sfw = np.random.default_rng(seed + 50_000), np.random.default_rng(seed + 60_000)
    images = [warm_blobs(rng_nsfw) for _ in range(per_family)]
    images += [cool_bars(rng_sfw) for _ in range(per_family)]
    return images, [1] * per_family + [0] * per_family


def held_out_auroc(checkpoint: str, images: list, labels: list[int]) -> float:
    from trainer.checkpoint import CheckpointScorer

    scorer = CheckpointScorer(checkpoint, device="cpu")
    pixels = np.stack([scorer.preprocessing.pixels(img) for img in images])
    scores = np.concatenate(
        [scorer.score(pixels[i : i + 64]).probabilities for i in range(0, len(pixels), 64)]
    )
    return float(auroc(labels, scores.tolist()))


def main() -> None:
    import torch

    from trainer.run import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        help="NAME=OVERRIDE[,OVERRIDE...], repeatable (e.g. max8=model.pool=8,model.pool_kind=max;"
        " NAME=default for the config as is); replaces the before/after pair",
    )
    args = parser.parse_args()
    variants = dict(args.variant) if args.variant else VARIANTS

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    images, labels = held_out(args.test, args.seed)
    print(f"held-out set: {args.test} warm blobs + {args.test} cool bars")
    for name, variant in variants.items():
        overrides = ["trainer.accelerator=cpu"]
        overrides += [o for o in variant if o != "default"]
        overrides += [f"training.max_epochs={args.epochs}"] if args.epochs else []
        cfg = load_config("config_baseline", overrides)
        with tempfile.TemporaryDirectory() as tmp:
            store_path = labelled_home(Path(tmp), args.train, args.seed)
            start = time.perf_counter()
            result = train(store_path, Home(store_path.parent), cfg)
            took = time.perf_counter() - start
            if result.status != "done":
                raise SystemExit(f"{name}: training {result.status}: {result.message}")
            from trainer.checkpoint import load_checkpoint

            model, _ = load_checkpoint(result.checkpoint)
            dense = sum(m.weight.numel() for m in model.head if isinstance(m, torch.nn.Linear))
            test = held_out_auroc(result.checkpoint, images, labels)
        val = result.metrics.get("val_auroc")
        print(
            f"{name:32s} dense weights {dense / 1e6:6.2f}M  "
            f"epochs {len(result.epochs)} (best {result.best_epoch})  "
            f"val AUROC {val:.3f}  held-out AUROC {test:.3f}  ({took:.0f} s)"
        )


if __name__ == "__main__":
    main()
