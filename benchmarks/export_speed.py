"""Export speed: ConvNext-Tiny images/s in PyTorch, onnxruntime float and int8, batch 1 and 32.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/export_speed.py
Options: --model NAME (default convnext_tiny, random weights: speed does not need training),
--size S (default 200), --images N (labelled images for the parity check and int8
calibration, default 64), --seconds T (per timing, default 2), --repeats R (interleaved
rounds, best kept; default 3).

The export goes through the real pipeline (trainer.export, .parity and .quantize: dynamo
export, checker, parity, static QDQ int8); the int8 accuracy bounds are lifted here because
random weights say nothing about accuracy, and the deltas are printed instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.trainer import make_dataset

from nsfw_tui.core.labels import import_folders
from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.store import Store


def torch_rate(model, x: np.ndarray, seconds: float) -> float:
    import torch

    t = torch.from_numpy(x)
    with torch.inference_mode():
        model(t)  # warm-up
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or n < 2:
            model(t)
            n += 1
    return n * len(x) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnext_tiny")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import onnxruntime
    import torch

    from nsfw_tui.models import onnx_files
    from trainer import export, quantize
    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model

    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"{torch.get_num_threads()} torch threads"
    )
    tmp = Path(tempfile.mkdtemp(prefix="export-speed-"))
    size = args.size
    torch.manual_seed(0)
    cfg = {"name": args.model, "pretrained": False}
    model = build_model(cfg, (size, size)).eval()
    meta = {
        "model_id": f"{args.model}-bench",
        "model": cfg,
        "input_size": [size, size],
        "threshold": 0.5,
        "preprocessing": IMAGENET(size).to_dict(),
        "architecture": args.model,
    }
    ckpt = save_checkpoint(tmp / "ckpt", model, meta)
    root = make_dataset(tmp / "data", args.images // 2, args.images - args.images // 2)
    store = Store.open(tmp / "store.db")
    import_folders(store, [(root / "nsfw", "nsfw"), (root / "sfw", "sfw")])

    start = time.perf_counter()
    report = export.export_onnx(store, checkpoint=ckpt, output=tmp / "model.onnx", say=print)
    p, took = report.parity, time.perf_counter() - start
    print(
        f"export ({report.exporter}, opset {report.opset}) + checks: {took:.1f} s; max abs "
        f"diff {p.random_max_diff:.2g} random, {p.image_max_diff:.2g} on {p.image_n} images; "
        f"{report.size_bytes / 1e6:.1f} MB"
    )
    quantize.INT8_MAX_PROB_CHANGE = quantize.INT8_MAX_AUROC_CHANGE = float("inf")
    start = time.perf_counter()
    q = quantize.quantize_onnx(store, report)
    print(
        f"int8 quantization (static QDQ, {min(p.image_n, quantize.MAX_CALIBRATION)} calibration "
        f"images): {time.perf_counter() - start:.1f} s; {q.size_bytes / 1e6:.1f} MB; max "
        f"probability change {q.max_prob_change:.4f} (random weights)"
    )

    float_s, int8_s = onnx_files.cpu_session(report.path), onnx_files.cpu_session(q.path)
    wrapped = export._probability_module(model)
    pixels = report.images[0]
    print(f"\n{args.model} {size}x{size}, images/s (best of {args.repeats}; higher is better)")
    print(f"{'batch':>5}  {'PyTorch':>9}  {'ORT float':>9}  {'ORT int8':>9}  {'int8/float':>10}")
    for batch in (1, 32):
        x = report.preprocessing.tensor(np.resize(pixels, (batch, *pixels.shape[1:])))
        best = [0.0, 0.0, 0.0]
        for _ in range(args.repeats):  # interleaved, best of: other load only ever slows a run
            best[0] = max(best[0], torch_rate(wrapped, x, args.seconds))
            best[1] = max(best[1], quantize.throughput(float_s, x, seconds=args.seconds))
            best[2] = max(best[2], quantize.throughput(int8_s, x, seconds=args.seconds))
        rates = best
        print(
            f"{batch:>5}  {rates[0]:>9.1f}  {rates[1]:>9.1f}  {rates[2]:>9.1f}  "
            f"{rates[2] / rates[1]:>9.2f}x"
        )
    store.close()


if __name__ == "__main__":
    main()
