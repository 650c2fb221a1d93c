"""The scoring pipeline: cache, duplicates, bad files, decode isolation, bounded memory."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.imagegen import (
    animated_gif,
    faulty_decoder,
    photo,
    photo_folder,
    png_header_bomb,
    save,
    truncated_jpeg,
    zero_tailed,
)

from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.report import decisions
from nsfw_tui.core.scan import ScanOptions, scan_files, scan_folder, walk_images
from nsfw_tui.core.scorers import ScoreBatch


class RednessScorer:
    """A fake model: P(nsfw) is how red the frame is; counts its calls and images."""

    id = "fake-redness"
    preprocessing = IMAGENET(32)
    default_threshold = 0.5

    def __init__(self) -> None:
        self.calls = 0
        self.frames = 0

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        self.calls += 1
        self.frames += len(pixels)
        px = pixels.astype(np.float32)
        red = px[..., 0].mean(axis=(1, 2)) - px[..., 1:].mean(axis=(1, 2, 3))
        return ScoreBatch(np.clip(red / 255.0 + 0.5, 0, 1), px.mean(axis=(1, 2)))


INLINE = ScanOptions(workers=0, batch_size=8)


def by_name(result) -> dict:
    return {os.path.basename(i.path): i for i in result.items}


def test_scores_every_image_then_answers_from_cache(tmp_path, store):
    photo_folder(tmp_path / "photos", 12)
    scorer = RednessScorer()
    first = scan_folder(tmp_path / "photos", scorer, store, INLINE)
    assert first.scored == 12 and first.reused == 0 and first.errors == 0
    assert all(0.0 <= i.probability <= 1.0 for i in first.items)
    calls = scorer.calls
    assert calls >= 2  # batches of 8

    second = scan_folder(tmp_path / "photos", scorer, store, INLINE)
    assert scorer.calls == calls, "a rerun over unchanged files must not call the scorer"
    assert second.reused == 12 and second.scored == 0
    assert {i.path: i.probability for i in second.items} == {
        i.path: i.probability for i in first.items
    }


def test_rerun_with_worker_processes_calls_scorer_zero_times(tmp_path, store):
    photo_folder(tmp_path / "p", 6)
    scorer = RednessScorer()
    scan_folder(tmp_path / "p", scorer, store, ScanOptions(workers=2))
    calls = scorer.calls
    again = scan_folder(tmp_path / "p", scorer, store, ScanOptions(workers=2))
    assert scorer.calls == calls and again.reused == 6


def test_duplicates_and_renames_reuse_the_content_score(tmp_path, store):
    folder = tmp_path / "p"
    [a] = photo_folder(folder, 1)
    shutil.copy(a, folder / "copy_of_a.jpg")
    scorer = RednessScorer()
    res = scan_folder(folder, scorer, store, INLINE)
    assert scorer.frames == 1, "two files with the same bytes are scored once"
    probs = {i.probability for i in res.items}
    assert len(probs) == 1

    a.rename(folder / "renamed.jpg")
    res2 = scan_folder(folder, scorer, store, INLINE)
    assert scorer.frames == 1, "a renamed file is recognised by its hash"
    assert by_name(res2)["renamed.jpg"].cached


def test_changed_file_is_rescored(tmp_path, store):
    folder = tmp_path / "p"
    save(Image.new("RGB", (64, 64), (0, 0, 255)), folder / "x.png")
    scorer = RednessScorer()
    blue = scan_folder(folder, scorer, store, INLINE).items[0].probability
    save(Image.new("RGB", (64, 64), (255, 0, 0)), folder / "x.png")
    os.utime(folder / "x.png", ns=(1, 1_000_000_000))  # a new mtime even on coarse clocks
    red = scan_folder(folder, scorer, store, INLINE).items[0].probability
    assert red > 0.9 > 0.1 > blue


def test_bad_files_are_errors_never_safe(tmp_path, store):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image\n")
    truncated_jpeg(folder / "truncated.jpg", 0.5)
    png_header_bomb(folder / "bomb.png", 50000, 50000)
    save(photo((80, 60)).convert("CMYK"), folder / "cmyk.jpg")
    gradient = (np.arange(256 * 64, dtype=np.uint32).reshape(64, 256) * 4).astype(np.uint16)
    save(Image.fromarray(gradient), folder / "sixteen.png")
    res = scan_folder(folder, RednessScorer(), store, INLINE)
    items = by_name(res)
    assert items["empty.jpg"].error_kind == "empty"
    assert items["text.jpg"].error_kind == "unidentified"
    assert items["truncated.jpg"].error_kind in {"truncated", "corrupt"}
    assert items["bomb.png"].error_kind == "bomb"
    for name in ("empty.jpg", "text.jpg", "truncated.jpg", "bomb.png"):
        assert items[name].probability is None
    assert items["cmyk.jpg"].probability is not None
    assert items["sixteen.png"].probability is not None
    assert res.errors == 4

    # Content errors are remembered for unchanged files; nothing is re-read.
    again = scan_folder(folder, RednessScorer(), store, INLINE)
    assert by_name(again)["truncated.jpg"].cached
    assert by_name(again)["bomb.png"].error_kind == "bomb"


def test_p12_zero_tailed_files_are_errors_never_scored(tmp_path, store):
    folder = tmp_path / "downloads"
    photo_folder(folder, 2)
    broken = [
        zero_tailed(folder / "a.jpg", 0.5),
        zero_tailed(folder / "b.jpg", 0.95, seed=1, progressive=True),
        zero_tailed(folder / "c.png", 0.7),
        zero_tailed(folder / "d.gif", 0.4),
    ]
    res = scan_folder(folder, RednessScorer(), store, INLINE)
    items = by_name(res)
    assert res.scored == 2 and res.errors == 4
    for path in broken:
        item = items[path.name]
        assert item.error_kind == "truncated" and item.probability is None, item
        assert "zeros" in item.error
        assert store.predictions(RednessScorer.id, [item.sha256]) == {}
    again = by_name(scan_folder(folder, RednessScorer(), store, INLINE))
    assert all(again[p.name].cached and again[p.name].error_kind == "truncated" for p in broken)


def test_animated_image_scores_its_most_nsfw_frame(tmp_path, store):
    folder = tmp_path / "anim"
    folder.mkdir()
    animated_gif(folder / "mixed.gif", [(0, 0, 255), (0, 0, 200), (255, 0, 0), (0, 0, 150)])
    animated_gif(folder / "calm.gif", [(0, 0, 255), (0, 0, 250)])
    res = by_name(scan_folder(folder, RednessScorer(), store, INLINE))
    assert res["mixed.gif"].probability > 0.9
    assert res["calm.gif"].probability < 0.2
    feats = store.features("fake-redness", res["mixed.gif"].sha256)
    assert feats.shape == (4, 3) and feats.dtype == np.float16


def test_exif_rotated_image_is_stored_upright(tmp_path, store):
    folder = tmp_path / "rot"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    save(photo((300, 200)), folder / "rotated.jpg", exif=exif, quality=90)
    res = scan_folder(folder, RednessScorer(), store, INLINE)
    image = store.image(res.items[0].sha256)
    assert (image.width, image.height) == (200, 300)


def test_walk_survives_symlink_loops_and_odd_names(tmp_path):
    root = tmp_path / "tree"
    photo_folder(root / "a", 2)
    os.symlink(root, root / "a" / "loop")
    odd = os.fsencode(root / "a") + b"/caf\xe9.jpg"
    with open(odd, "wb") as fh:
        photo((40, 30)).save(fh, "JPEG")
    (root / ".hidden.jpg").write_bytes(b"x")
    found = list(walk_images(root))
    names = sorted(os.path.basename(p) for p in found)
    assert names == ["caf\udce9.jpg", "img_000.jpg", "img_001.jpg"]


def test_non_utf8_names_are_scored_and_stored(tmp_path, store):
    folder = tmp_path / "odd"
    folder.mkdir()
    with open(os.fsencode(folder) + b"/bad\xff.png", "wb") as fh:
        Image.new("RGB", (20, 20), (200, 0, 0)).save(fh, "PNG")
    res = scan_folder(folder, RednessScorer(), store, INLINE)
    assert res.items[0].probability is not None
    assert res.items[0].display_path.endswith("bad\\xff.png")
    again = scan_folder(folder, RednessScorer(), store, INLINE)
    assert again.reused == 1


def test_n1_a_raw_name_and_its_escaped_text_are_two_rows_and_json_keeps_the_bytes(tmp_path, store):
    folder = tmp_path / "odd"
    folder.mkdir()
    raw, literal = os.fsencode(folder) + b"/a\xff.png", os.fsencode(folder) + b"/a\\xff.png"
    for name, colour in ((raw, (250, 0, 0)), (literal, (0, 200, 200))):
        with open(name, "wb") as fh:
            Image.new("RGB", (20, 20), colour).save(fh, "PNG")
    res = scan_folder(folder, RednessScorer(), store, INLINE)
    assert len(res.items) == 2 and store.counts()["files"] == 2
    rows = decisions(res.items, store, 0.5)
    assert rows[0]["image_path"] == rows[1]["image_path"] == os.fsdecode(literal)
    by = {r.get("image_path_b64"): r for r in rows}
    assert set(by) == {None, base64.b64encode(raw).decode()}
    assert by[None]["prediction"] == 0 and by[base64.b64encode(raw).decode()]["prediction"] == 1
    again = scan_folder(folder, RednessScorer(), store, INLINE)
    assert again.reused == 2  # each answered from its own row


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_and_folder(tmp_path, store):
    folder = tmp_path / "perm"
    photo_folder(folder, 1)
    locked = save(photo((40, 30)), folder / "locked.jpg")
    locked.chmod(0)
    sub = folder / "closed"
    photo_folder(sub, 1)
    sub.chmod(0)
    try:
        res = scan_folder(folder, RednessScorer(), store, INLINE)
    finally:
        sub.chmod(0o755)
    assert by_name(res)["locked.jpg"].error_kind == "unreadable"
    assert res.walk_errors and "closed" in res.walk_errors[0][0]


def test_crash_and_hang_in_a_decoder_cost_one_file_each(tmp_path, store):
    folder = tmp_path / "faulty"
    photo_folder(folder, 4)
    shutil.copy(folder / "img_000.jpg", folder / "crash.jpg")
    shutil.copy(folder / "img_001.jpg", folder / "hang.jpg")
    opts = ScanOptions(workers=2, timeout_s=1.5, decoder=faulty_decoder)
    res = scan_folder(folder, RednessScorer(), store, opts)
    items = by_name(res)
    assert items["crash.jpg"].error_kind == "crash"
    assert items["hang.jpg"].error_kind == "timeout"
    assert all(items[f"img_{i:03d}.jpg"].probability is not None for i in range(4))
    assert res.errors == 2
    # Neither is a content error: the next scan tries them again.
    again = scan_folder(folder, RednessScorer(), store, ScanOptions(workers=2, timeout_s=5))
    assert by_name(again)["crash.jpg"].probability is not None


@pytest.mark.slow
def test_in_flight_decoded_images_stay_bounded_on_5000_files(tmp_path, store):
    folder = tmp_path / "many"
    folder.mkdir()
    tiny = Image.new("RGB", (4, 4))
    for i in range(5000):
        tiny.putpixel((0, 0), (i % 256, i // 256, 0))
        tiny.save(folder / f"t_{i:04d}.png")
    opts = ScanOptions(workers=2, queue_size=8, batch_size=8)
    res = scan_folder(folder, RednessScorer(), store, opts)
    assert len(res.items) == 5000 and res.errors == 0
    assert 1 <= res.max_in_flight <= 8
    print(f"\n5000 files: max decoded images in flight {res.max_in_flight} (queue size 8)")


def test_cancel_keeps_finished_batches(tmp_path, store):
    photo_folder(tmp_path / "p", 20)
    scorer = RednessScorer()
    stop_after = {"n": 0}

    def should_stop() -> bool:
        stop_after["n"] += 1
        return stop_after["n"] > 10

    res = scan_folder(tmp_path / "p", scorer, store, INLINE, should_stop=should_stop)
    assert res.cancelled
    kept = store.counts()["predictions"]
    assert 0 < kept < 20
    rest = scan_folder(tmp_path / "p", scorer, store, INLINE)
    assert rest.reused == kept and rest.scored == 20 - kept


def test_scan_files_reports_vanished_paths(tmp_path, store):
    [a] = photo_folder(tmp_path / "p", 1)
    res = scan_files([str(a), str(tmp_path / "p" / "gone.jpg")], RednessScorer(), store, INLINE)
    gone = by_name(res)["gone.jpg"]
    assert (gone.error_kind, gone.error) == ("missing", "file not found")
    assert Path(a).exists()


def test_worker_processes_start_when_stderr_has_no_descriptor(tmp_path):
    # Under Textual, sys.stderr is a capture object whose fileno() is -1; multiprocessing's
    # resource tracker passed it to its child and every scan in the app failed to start.
    import subprocess
    import sys

    photo_folder(tmp_path / "p", 2)
    code = f"""
import sys
class Capture:
    def write(self, text): return len(text)
    def flush(self): pass
    def fileno(self): return -1
sys.stderr = Capture()
from nsfw_tui.core.decode_pool import DecodePool
from nsfw_tui.core.preprocess import IMAGENET
from pathlib import Path
paths = sorted(str(p) for p in Path({str(tmp_path / "p")!r}).iterdir())
pool = DecodePool(IMAGENET(16), workers=1)
results = list(pool.map(paths))
print(sum(1 for r in results if hasattr(r, "sha256") and r.pixels))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"
