"""Training throughput: images/s of the baseline and ConvNext-Tiny steps, and one full fine-tune.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/train_speed.py
Options: --size S (default 200), --batch B (default 32), --steps N (default 5 timed steps),
--images N (default 1000 for the full run), --epochs E (default 1), --workers W (loader
processes in the full run), --device cpu|cuda (step rates), --skip-full.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.trainer import blobs, stripes

from nsfw_tui.core.config import load_config
from nsfw_tui.core.home import Home
from nsfw_tui.core.labels import import_folders
from nsfw_tui.core.store import Store


def step_rate(
    model_cfg: dict, size: int, batch: int, steps: int, device: str = "cpu"
) -> tuple[float, int]:
    """Images/s of forward + backward + AdamW step on in-memory tensors (no decoding)."""
    import torch

    from trainer.models import build_model

    torch.manual_seed(0)
    model = build_model(model_cfg, (size, size)).train().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x = torch.randn(batch, 3, size, size, device=device)
    y = (torch.rand(batch, device=device) > 0.5).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    step()  # warm-up: first-call allocation and kernel selection
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    elapsed = time.perf_counter() - start
    return batch * steps / elapsed, sum(p.numel() for p in params)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_images(folder: Path, n: int) -> None:
    """n photo-sized JPEGs, half stripes (nsfw/) and half blobs (sfw/)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        kind, draw = ("nsfw", stripes) if i % 2 == 0 else ("sfw", blobs)
        out = folder / kind / f"{kind}_{i:04d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        draw(rng, 240).resize((640, 480)).save(out, quality=90)


def data_rate(folder: Path, size: int, count: int = 200) -> float:
    """Images/s of decode + train-time augmentation + normalisation in one process."""
    from trainer.data import ImageDataset, Sample, train_transform, val_preprocessing

    cfg = load_config(None, [f"data.input_size=[{size},{size}]"])
    paths = sorted(folder.rglob("*.jpg"))[:count]
    dataset = ImageDataset(
        [Sample(str(i), str(p), i % 2) for i, p in enumerate(paths)],
        val_preprocessing(cfg.data),
        train_transform(cfg.data),
    )
    dataset[0]
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return len(dataset) / (time.perf_counter() - start)


def full_run(folder: Path, home: Path, size: int, epochs: int, batch: int, workers: int) -> None:
    from trainer.run import train

    store_path = home / "store.db"
    with Store.open(store_path) as store:
        import_folders(store, [(folder / "nsfw", "nsfw"), (folder / "sfw", "sfw")])
    cfg = load_config(
        None,
        [
            "model.pretrained=false",  # no network here; speed does not depend on the values
            f"data.input_size=[{size},{size}]",
            f"training.max_epochs={epochs}",
            f"training.batch_size={batch}",
            f"data.num_workers={workers}",
        ],
    )
    start = time.perf_counter()
    result = train(store_path, Home(home), cfg)
    elapsed = time.perf_counter() - start
    print(f"  status {result.status}; counts {result.counts}")
    for e in result.epochs:
        print(
            f"  epoch {e['epoch']}: {e['seconds']:.1f} s, train_loss {e['train_loss']:.3f}, "
            f"val_auroc {e['val_auroc']:.3f}"
        )
    print(f"  total wall time, labels to registered model: {elapsed:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="data.num_workers, full run")
    parser.add_argument("--device", default="cpu", help="step-rate device: cpu or cuda")
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()

    import torch

    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, steps on {where}")
    print(f"training step rate at {args.size}x{args.size}, batch {args.batch} (no decoding):")
    cases = [
        ("baseline CNN", load_config("baseline").model),
        ("convnext_tiny, 2 stages frozen", {"name": "convnext_tiny", "freeze_stages": 2}),
        ("convnext_tiny, unfrozen", {"name": "convnext_tiny", "freeze_stages": 0}),
    ]
    for label, model_cfg in cases:
        cfg = {**dict(model_cfg), "pretrained": False}
        rate, trainable = step_rate(cfg, args.size, args.batch, args.steps, args.device)
        print(f"  {label:32s} {rate:7.1f} images/s  ({trainable / 1e6:.1f} M trainable params)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        start = time.perf_counter()
        make_images(folder, args.images)
        print(f"generated {args.images} 640x480 JPEGs in {time.perf_counter() - start:.1f} s")
        rate = data_rate(folder, args.size)
        print(f"decode + augment (one process): {rate:.1f} images/s")
        if not args.skip_full:
            print(
                f"full fine-tune: convnext_tiny (2 stages frozen) on {args.images} images, "
                f"{args.epochs} epoch(s), batch {args.batch}, {args.size}x{args.size}, "
                f"{args.workers} loader workers, device chosen by the trainer:"
            )
            full_run(folder, Path(tmp) / "home", args.size, args.epochs, args.batch, args.workers)


if __name__ == "__main__":
    main()
