"""The safe image loader and preprocessing: bombs, truncation, fuzz, orientation, modes, frames."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import queue
import random
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.imagegen import photo_array

import nsfw_tui
from nsfw_tui.core import images
from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.images import (
    ALLOWED_FORMATS,
    IMAGE_SUFFIXES,
    MAX_FRAMES_IN_FILE,
    decode_file,
    hash_file,
    is_image_name,
    load_image,
    read_bytes,
)
from nsfw_tui.core.preprocess import IMAGENET, OPEN_NSFW

REPO = Path(nsfw_tui.__file__).resolve().parents[1]
LIMIT = Image.MAX_IMAGE_PIXELS
RED = (220, 20, 20)

# -- generators --------------------------------------------------------------------------


@pytest.fixture
def photo(tmp_path):
    """Factory: photo(name, size=(w, h), seed=0, **save_kwargs) -> path of a saved photo."""

    def make(name: str = "photo.jpg", size=(160, 120), seed: int = 0, **kwargs) -> Path:
        path = tmp_path / name
        Image.fromarray(photo_array(*size, seed)).save(path, **kwargs)
        return path

    return make


def marked(w: int, h: int) -> np.ndarray:
    """An asymmetric image: a grey gradient with a red block in the top-left corner."""
    y, x = np.mgrid[0:h, 0:w]
    a = np.repeat(((x * 3 + y * 2) % 160 + 40).astype(np.uint8)[..., None], 3, axis=2)
    a[: h // 4, : w // 4] = RED
    return a


def red_corner(a: np.ndarray) -> str:
    """Which corner of an (h, w, 3) image holds the red block."""
    h, w = a.shape[:2]
    redness = a[..., 0].astype(int) - a[..., 1].astype(int)
    cy = (redness > 100).nonzero()[0].mean() < h / 2
    cx = (redness > 100).nonzero()[1].mean() < w / 2
    return ("top" if cy else "bottom") + "-" + ("left" if cx else "right")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_header(w: int, h: int, *, end: bool = False) -> bytes:
    """45 bytes (57 with IEND): a PNG that claims w x h RGB pixels and carries none."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"")
    return data + png_chunk(b"IEND", b"") if end else data


def tiny_gif(screen=(1, 1), frames=((0, 0, 1, 1),)) -> bytes:
    """A GIF of 1x1-pixel frames (x, y, w, h); w x h is only what the descriptor claims."""
    out = [b"GIF89a", struct.pack("<HH", *screen), b"\x80\x00\x00\xff\xff\xff\x00\x00\x00"]
    for x, y, w, h in frames:
        out += [b",", struct.pack("<HHHH", x, y, w, h), b"\x00\x02\x02D\x01\x00"]
    return b"".join(out) + b";"


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def kind_of(source, **kwargs) -> str:
    try:
        load_image(source, **kwargs)
    except ImageError as exc:
        return exc.kind
    return "ok"


# -- running decodes in child processes ---------------------------------------------------

_CHILD = r"""
import json, resource, sys, time
try:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
except (ValueError, OSError):
    pass
from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.images import load_image

def peak_rss_mb():
    # ru_maxrss would include the parent's RSS at fork time; VmHWM restarts at exec
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

for line in sys.stdin:
    start = time.perf_counter()
    try:
        img = load_image(line.rstrip("\n"))
        good = all(f.mode == "RGB" for f in img.frames) and 1 <= len(img.frames) <= 8
        out = {"result": "ok" if good else "bad-output"}
    except ImageError as exc:
        out = {"result": exc.kind, "reason": exc.reason}
    except BaseException as exc:
        out = {"result": "escaped", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    out["seconds"] = time.perf_counter() - start
    out["rss_mb"] = peak_rss_mb()
    print(json.dumps(out), flush=True)
"""


class _Child:
    """A python process that loads one path per stdin line and answers with a JSON line."""

    def __init__(self, log: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1")
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,  # libtiff and friends write warnings here
            env=env,
            cwd=REPO,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, path: Path, timeout: float) -> dict:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{path}\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return {"result": "hang", "detail": str(path)}
        except BrokenPipeError:
            line = None
        if line is None:
            return {"result": "crash", "detail": f"{path}: exit {self.proc.wait(5)}"}
        return json.loads(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def run_isolated(paths: list[Path], log: Path, lanes: int = 2, timeout: float = 10.0):
    """Load each path in a child process (restarted after a hang or crash)."""
    results: list[dict] = [{}] * len(paths)
    todo: queue.Queue[int] = queue.Queue()
    for i in range(len(paths)):
        todo.put(i)

    def lane() -> None:
        child = None
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                break
            child = child or _Child(log)
            results[i] = child.run(paths[i], timeout)
            if results[i]["result"] in ("hang", "crash"):
                child.close()
                child = None
        if child:
            child.close()

    threads = [threading.Thread(target=lane) for _ in range(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- names and constants ----------------------------------------------------------------


def test_suffixes_and_allowlist():
    assert is_image_name("a/B.JPG") and is_image_name("x.heic") and is_image_name("y.tiff")
    assert not is_image_name("notes.txt") and not is_image_name("scan.eps")
    assert {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} <= (
        IMAGE_SUFFIXES
    )
    assert {"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"} <= set(ALLOWED_FORMATS)
    for dangerous in ("EPS", "PDF", "PSD", "FITS", "ICO", "JPEG2000", "DDS"):
        assert dangerous not in ALLOWED_FORMATS


def test_images_module_imports_only_light_dependencies():
    code = (
        "import sys, nsfw_tui.core.images\n"
        "heavy = ('onnxruntime', 'onnx', 'sqlite3', 'sqlite_utils', 'textual', 'torch')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"


# -- P1 / P2: bombs and frame floods ------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "h"), [(10000, 10000), (14000, 14000), (50000, 50000), (65535, 65535)]
)
def test_png_header_over_the_pixel_limit_is_a_bomb(w, h):
    with pytest.raises(ImageError) as info:
        load_image(png_header(w, h))
    assert info.value.kind == "bomb"
    assert f"{w * h:,} pixels" in info.value.reason and f"{LIMIT:,}" in info.value.reason


def test_bomb_between_one_and_two_times_the_limit_is_refused_not_warned():
    assert LIMIT < 10000 * 10000 < 2 * LIMIT  # Pillow alone would only warn here
    assert kind_of(png_header(10000, 10000)) == "bomb"
    with (
        pytest.warns(Image.DecompressionBombWarning),
        Image.open(io.BytesIO(png_header(10000, 10000))) as im,
    ):
        assert im.size == (10000, 10000)  # proves the premise


@pytest.mark.parametrize(
    ("w", "h", "kinds"),
    [
        (9000, 9000, {"ok", "truncated"}),  # under the limit; no pixel data follows
        (65535, 1, {"ok", "truncated"}),
        (1, 65535, {"ok", "truncated"}),
        (0, 100, {"unidentified", "corrupt"}),
        (100, 0, {"unidentified", "corrupt"}),
    ],
)
def test_png_headers_under_the_limit_fail_cleanly(w, h, kinds):
    assert kind_of(png_header(w, h, end=True)) in kinds


@pytest.mark.parametrize(
    "data",
    [
        tiny_gif(screen=(65535, 65535)),
        tiny_gif(screen=(12000, 12000)),
        tiny_gif(frames=[(0, 0, 65535, 65535)]),
        tiny_gif(frames=[(0, 0, 1, 1), (0, 0, 10000, 10000)]),
        tiny_gif(frames=[(0, 0, 1, 1), (60000, 60000, 1, 1)]),
    ],
    ids=["screen-4G", "screen-144M", "frame0-extent", "frame1-extent", "frame1-offset"],
)
def test_gif_screen_and_frame_extent_bombs(data):
    assert kind_of(data) == "bomb"


def test_bombs_in_a_child_process_never_decode_and_stay_small(tmp_path):
    bomb = {"bomb"}
    files = {
        "png-10k.png": (png_header(10000, 10000), bomb),
        "png-14k.png": (png_header(14000, 14000), bomb),
        "png-50k.png": (png_header(50000, 50000), bomb),
        "gif-screen.gif": (tiny_gif(screen=(65535, 65535)), bomb),
        "gif-extent.gif": (tiny_gif(frames=[(0, 0, 1, 1), (0, 0, 20000, 20000)]), bomb),
        "real-1bit.png": (encoded(Image.new("1", (10000, 10000)), "PNG"), bomb),
        # under the limit: Pillow allocates the canvas, then finds no pixel data
        "png-9k.png": (png_header(9000, 9000), {"ok", "truncated"}),
        "png-65535x1.png": (png_header(65535, 1), {"ok", "truncated"}),
    }
    paths = []
    for name, (data, _) in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    results = run_isolated(paths, tmp_path / "child.log", lanes=1)
    kinds = {name: r["result"] for name, r in zip(files, results, strict=True)}
    peak = max(r.get("rss_mb", 0) for r in results)
    n_bombs = sum(1 for _, allowed in files.values() if allowed == bomb)
    print(
        f"\nP1/P2: {n_bombs} bomb files, {list(kinds.values()).count('ok')} decoded, "
        f"0 OOM, peak child RSS {peak:.0f} MB; {kinds}"
    )
    for name, (_, allowed) in files.items():
        assert kinds[name] in allowed, name
    assert peak < 200


def test_bomb_is_refused_even_if_another_thread_drops_the_warning_filter(monkeypatch):
    header, gif = png_header(10000, 10000), tiny_gif(frames=[(0, 0, 1, 1), (0, 0, 10000, 10000)])
    for data in (header, gif):
        with pytest.raises(ImageError) as info:
            load_image(data)
        assert isinstance(info.value.__cause__, Image.DecompressionBombWarning)
    real = images.warnings.simplefilter
    monkeypatch.setattr(
        images.warnings,
        "simplefilter",
        lambda action, *a, **k: None if action == "error" else real(action, *a, **k),
    )
    for data in (header, gif):
        with pytest.raises(ImageError) as info:
            load_image(data)
        assert info.value.kind == "bomb" and info.value.__cause__ is None  # the size check


def test_real_compressed_bomb_is_refused():
    data = encoded(Image.new("1", (10000, 10000)), "PNG")
    assert len(data) < 20_000  # 100 Mpx in a few KB
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert info.value.kind == "bomb" and "100,000,000 pixels" in info.value.reason


def test_5000_frame_gif_is_sampled():
    data = tiny_gif(frames=[(0, 0, 1, 1)] * 5000)
    start = time.perf_counter()
    img = load_image(data)
    elapsed = time.perf_counter() - start
    print(f"\nP2: 5,000-frame 1x1 GIF -> {len(img.frames)} frames in {elapsed * 1000:.0f} ms")
    assert img.n_frames == 5000 and len(img.frames) == 8
    assert all(f.mode == "RGB" and f.size == (1, 1) for f in img.frames)


def test_gif_over_the_frame_limit_is_refused_without_walking_it():
    data = tiny_gif(frames=[(0, 0, 1, 1)] * (MAX_FRAMES_IN_FILE + 1))
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert info.value.kind == "too-many-frames"
    assert load_image(tiny_gif(frames=[(0, 0, 1, 1)] * MAX_FRAMES_IN_FILE)).n_frames == (
        MAX_FRAMES_IN_FILE
    )


def test_apng_claiming_too_many_frames_is_refused():
    frames = [Image.new("RGB", (4, 4), (i * 60, 0, 0)) for i in range(3)]
    data = encoded(frames[0], "PNG", save_all=True, append_images=frames[1:])
    at = data.index(b"acTL") - 4
    body = struct.pack(">II", 2_000_000, 0)
    patched = data[:at] + png_chunk(b"acTL", body) + data[at + 20 :]
    with pytest.raises(ImageError) as info:
        load_image(patched)
    assert info.value.kind == "too-many-frames" and "2,000,000" in info.value.reason


def test_webp_with_many_frames_is_sampled():
    frames = [Image.new("RGB", (2, 2), (i % 256, i // 256, 0)) for i in range(600)]
    data = encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    img = load_image(data)
    assert img.n_frames == 600 and len(img.frames) == 8


# -- P3: truncation -------------------------------------------------------------------


def test_truncation_sweep_never_returns_pixels(photo, tmp_path):
    seeds = {
        "JPEG": photo("t.jpg", (320, 240), quality=90).read_bytes(),
        "PNG": photo("t.png", (320, 240)).read_bytes(),
        "WEBP": photo("t.webp", (320, 240)).read_bytes(),
        "GIF": photo("t.gif", (320, 240)).read_bytes(),
        "TIFF": photo("t.tif", (320, 240)).read_bytes(),
    }
    jpeg = seeds["JPEG"]
    sos = jpeg.index(b"\xff\xda")
    markers = [i for i in range(2, sos + 2) if jpeg[i] == 0xFF and jpeg[i + 1] not in (0, 0xFF)]
    seen: dict[str, collections.Counter] = {}
    for fmt, data in seeds.items():
        cuts = [len(data) * pct // 100 for pct in (1, 5, 25, 50, 75, 99)]
        if fmt == "JPEG":
            cuts += markers
        for cut in cuts:
            seen.setdefault(fmt, collections.Counter())[kind_of(data[:cut])] += 1
    print("\nP3 truncation:", {fmt: dict(c) for fmt, c in seen.items()})
    for fmt, counts in seen.items():
        assert set(counts) <= {"truncated", "unidentified", "corrupt"}, fmt
    # the formats users upload most say "truncated", so a growing file is retried
    assert set(seen["JPEG"]) <= {"truncated"} and set(seen["PNG"]) == {"truncated"}


# -- P4: mutation fuzz ---------------------------------------------------------------------


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    # half the mutations land in the first 512 bytes, where the headers are
    pick = lambda: rng.randrange(min(len(b), 512) if rng.random() < 0.5 else len(b))  # noqa: E731
    op = rng.choice(("flip", "insert", "zero", "duplicate"))
    if op == "flip":
        for _ in range(rng.randint(1, 16)):
            i = pick()
            b[i] ^= 1 << rng.randrange(8)
    elif op == "insert":
        i = pick()
        b[i:i] = rng.randbytes(rng.randint(1, 64))
    elif op == "zero":
        i, n = pick(), rng.randint(1, 256)
        b[i : i + n] = bytes(len(b[i : i + n]))
    else:
        i, n = pick(), rng.randint(1, 128)
        b[i:i] = b[i : i + n]
    return bytes(b)


def test_mutation_fuzz_1200_cases_in_child_processes(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    base = Image.fromarray(photo_array(96, 64, seed=3))
    anim = [base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), base.rotate(180)]
    seeds = [
        encoded(base, "JPEG", quality=85, exif=exif),
        encoded(base.convert("RGBA"), "PNG"),
        encoded(anim[0], "GIF", save_all=True, append_images=anim[1:], duration=50),
        encoded(anim[0], "WEBP", save_all=True, append_images=anim[1:], quality=80),
        encoded(base, "TIFF"),
    ]
    rng = random.Random(20240601)
    paths = []
    for i in range(1200):
        path = tmp_path / f"case{i:04d}.img"
        path.write_bytes(_mutate(seeds[i % len(seeds)], rng))
        paths.append(path)
    start = time.perf_counter()
    results = run_isolated(paths, tmp_path / "child.log")
    elapsed = time.perf_counter() - start
    hist = collections.Counter(r["result"] for r in results)
    slowest = max(r.get("seconds", 0.0) for r in results)
    print(
        f"\nP4 fuzz: {len(results)} cases in {elapsed:.1f} s, {hist['hang']} hangs, "
        f"{hist['crash']} crashes, max case {slowest * 1000:.0f} ms, kinds {dict(hist)}"
    )
    problems = [r for r in results if r["result"] in ("hang", "crash", "escaped", "bad-output")]
    assert not problems, problems[:5]
    assert hist["ok"] and len(hist) > 2  # the mutations did reach the decoders
    unexplained = [r for r in results if r["result"] != "ok" and not r.get("reason")]
    assert not unexplained, unexplained[:5]  # every refusal says why


# -- P7: orientation -----------------------------------------------------------------------

UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
CORNER = {
    1: "top-left",
    2: "top-right",
    3: "bottom-right",
    4: "bottom-left",
    5: "top-left",
    6: "top-right",
    7: "bottom-right",
    8: "bottom-left",
}


# format -> (save options, mean abs tolerance); PNG keeps EXIF in eXIf, TIFF in its IFD
ORIENTED = {
    "JPEG": ({"quality": 95}, 3.0),
    "WEBP": ({"lossless": True}, 0.0),
    "PNG": ({}, 0.0),
    "TIFF": ({}, 0.0),
    "AVIF": ({"quality": 95}, 4.0),
}


@pytest.mark.parametrize("fmt", list(ORIENTED))
@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 99])
def test_exif_orientation_is_applied_once(fmt, orientation):
    if fmt not in ALLOWED_FORMATS:
        pytest.skip(f"no {fmt} plugin in this Pillow")
    source = marked(64, 40)
    exif = Image.Exif()
    exif[0x0112] = orientation
    options, tolerance = ORIENTED[fmt]
    img = load_image(encoded(Image.fromarray(source), fmt, exif=exif, **options))
    k = orientation if orientation in UPRIGHT else 1  # invalid values mean "as stored"
    expected = UPRIGHT[k](source)
    got = np.asarray(img.frames[0])
    assert got.shape == expected.shape
    assert (img.width, img.height) == (expected.shape[1], expected.shape[0])
    assert red_corner(got) == CORNER[k]
    assert np.abs(got.astype(int) - expected).mean() <= tolerance


def test_corrupt_exif_never_fails_the_load():
    data = encoded(Image.fromarray(marked(64, 40)), "JPEG", quality=95)
    garbage = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + bytes(range(40))
    app1 = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    img = load_image(data[:2] + app1 + data[2:])
    assert img.frames[0].size == (64, 40) and red_corner(np.asarray(img.frames[0])) == "top-left"


# -- P8: modes -----------------------------------------------------------------------------


def _gradient16(w=256, h=32) -> np.ndarray:
    return np.tile(np.linspace(0, 65535, w), (h, 1)).round().astype(np.uint16)


def _mode_file(mode: str) -> tuple[bytes, str]:
    """Bytes of a file whose decoded mode is ``mode``, and that mode as Pillow opens it."""
    rgb = Image.fromarray(photo_array(64, 48, seed=5))
    if mode == "1":
        return encoded(rgb.convert("1"), "PNG"), "1"
    if mode in ("L", "LA", "RGB", "RGBA"):
        return encoded(rgb.convert(mode), "PNG"), mode
    if mode == "P":
        return encoded(rgb.quantize(32), "PNG"), "P"
    if mode == "P+tRNS":
        return encoded(rgb.quantize(32), "PNG", transparency=0), "P"
    if mode == "CMYK":
        return encoded(rgb.convert("CMYK"), "JPEG", quality=95), "CMYK"
    if mode == "I;16":
        return encoded(Image.fromarray(_gradient16()), "PNG"), "I;16"
    if mode == "I;16B":
        return encoded(Image.fromarray(_gradient16().astype(">u2")), "TIFF"), "I;16B"
    if mode == "I":
        return encoded(Image.fromarray(_gradient16().astype(np.int32)), "TIFF"), "I"
    if mode == "F":
        ramp = (_gradient16() / 65535).astype(np.float32)
        return encoded(Image.fromarray(ramp), "TIFF"), "F"
    if mode in ("YCbCr", "LAB"):
        return encoded(rgb.convert(mode), "TIFF"), mode
    raise AssertionError(mode)


MODES = ["1", "L", "LA", "P", "P+tRNS", "RGB", "RGBA", "CMYK"]
MODES += ["I;16", "I;16B", "I", "F", "YCbCr", "LAB"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_comes_out_rgb(mode):
    data, opened_as = _mode_file(mode)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == opened_as  # the file really exercises this mode
        size = im.size
    img = load_image(data)
    assert [f.mode for f in img.frames] == ["RGB"] and img.frames[0].size == size


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F"])
def test_high_bit_depth_gradient_keeps_its_levels(mode):
    data, _ = _mode_file(mode)
    a = np.asarray(load_image(data).frames[0])
    levels = len(np.unique(a[..., 0]))
    white = (a[..., 0] == 255).mean()
    print(f"\nP8 {mode}: {levels} distinct levels, {white:.1%} white")
    assert levels >= 200 and white < 0.02
    assert a[0, 0, 0] == 0 and a[0, -1, 0] == 255
    assert np.array_equal(a[..., 0], a[..., 2])


def test_transparent_pixels_land_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere, transparent everywhere...
    rgba[0, 0] = (0, 0, 255, 255)  # ...except one opaque blue pixel
    rgba[0, 1] = (255, 0, 0, 128)
    a = np.asarray(load_image(encoded(Image.fromarray(rgba), "PNG")).frames[0])
    assert tuple(a[1, 1]) == (255, 255, 255)
    assert tuple(a[0, 0]) == (0, 0, 255)
    assert tuple(a[0, 1]) == (255, 127, 127) or abs(int(a[0, 1, 1]) - 127) <= 1

    p = Image.new("P", (4, 4), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((0, 0), 1)
    b = np.asarray(load_image(encoded(p, "PNG", transparency=0)).frames[0])
    assert tuple(b[1, 1]) == (255, 255, 255) and tuple(b[0, 0]) == (0, 0, 255)

    la = Image.fromarray(np.dstack([np.zeros((4, 4), np.uint8)] * 2), "LA")
    assert tuple(np.asarray(load_image(encoded(la, "PNG")).frames[0])[2, 2]) == (255,) * 3


def test_cmyk_jpeg_keeps_its_colour():
    red = Image.new("RGB", (16, 16), (230, 20, 20)).convert("CMYK")
    a = np.asarray(load_image(encoded(red, "JPEG", quality=95)).frames[0]).astype(int)
    assert np.abs(a[8, 8] - (230, 20, 20)).max() < 12


# -- P9: animations --------------------------------------------------------------------------


def _colours(n: int) -> list[tuple[int, int, int]]:
    return [((i * 37) % 256, (255 - i * 11) % 256, (i * 91) % 256) for i in range(n)]


def test_animated_gif_with_mixed_modes_and_sizes():
    frames = [
        Image.fromarray(photo_array(64, 48, seed=1)).quantize(16),
        Image.new("RGB", (32, 24), (30, 200, 30)),
        Image.new("L", (64, 48), 90),
        Image.new("RGBA", (48, 40), (30, 30, 200, 255)),
    ]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], disposal=2)
    with Image.open(io.BytesIO(data)) as im:
        im.seek(1)
        assert im.mode != "P"  # Pillow itself hands back mixed modes
    img = load_image(data, max_frames=8)
    assert img.n_frames == 4 and len(img.frames) == 4
    assert all(f.mode == "RGB" and f.size == (64, 48) for f in img.frames)
    first = np.asarray(frames[0].convert("RGB"))
    assert np.array_equal(np.asarray(img.frames[0]), first)
    assert tuple(np.asarray(img.frames[1])[5, 5]) == (30, 200, 30)
    assert tuple(np.asarray(img.frames[2])[5, 5]) == (90, 90, 90)


def test_gif_frames_outside_the_canvas_load_without_bomb():
    img = load_image(tiny_gif(screen=(4, 4), frames=[(0, 0, 1, 1), (10, 10, 1, 1)]))
    assert all(f.mode == "RGB" for f in img.frames) and img.n_frames == 2


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_sampling_is_even_and_starts_at_frame_zero(fmt):
    colours = _colours(20)
    frames = [Image.new("RGB", (8, 8), c) for c in colours]
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
    img = load_image(data, max_frames=4)
    assert img.format == fmt and img.n_frames == 20 and len(img.frames) == 4
    got = [tuple(int(v) for v in np.asarray(f)[4, 4]) for f in img.frames]
    expected = [colours[i] for i in (0, 6, 13, 19)]
    assert all(np.abs(np.subtract(g, e)).max() <= 8 for g, e in zip(got, expected, strict=True))
    assert len(load_image(data, max_frames=1).frames) == 1


# -- P11: extension versus content, and file errors -----------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"])
def test_every_allowed_format_loads(fmt):
    if fmt not in ALLOWED_FORMATS:
        pytest.skip(f"no {fmt} plugin in this Pillow")
    base = Image.fromarray(photo_array(48, 32, seed=6))
    if fmt == "MPO":  # a stereo pair: only the first view is scored
        data = encoded(base, "MPO", save_all=True, append_images=[base.rotate(180)])
    else:
        data = encoded(base, fmt)
    img = load_image(data)
    assert img.format == fmt and (img.width, img.height) == (48, 32)
    assert img.n_frames == (2 if fmt == "MPO" else 1) and len(img.frames) == 1
    assert img.frames[0].mode == "RGB" and img.frames[0].size == (48, 32)
    lossy = fmt in ("JPEG", "MPO", "WEBP", "AVIF", "GIF")
    diff = np.abs(np.asarray(img.frames[0]).astype(int) - np.asarray(base)).mean()
    assert diff < (12 if lossy else 0.5)


def test_content_decides_not_the_extension(tmp_path):
    path = tmp_path / "really-a-png.jpg"
    Image.fromarray(marked(20, 10)).save(path, "PNG")
    img = load_image(path)
    assert img.format == "PNG" and img.frames[0].size == (20, 10)


def test_eps_named_png_is_refused_without_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    calls = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append("gs"))
    real_open = EpsImagePlugin.EpsImageFile._open
    monkeypatch.setattr(
        EpsImagePlugin.EpsImageFile, "_open", lambda self: calls.append("eps") or real_open(self)
    )
    path = tmp_path / "innocent.png"
    path.write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n"
        b"newpath 0 0 moveto 100 100 lineto stroke\nshowpage\n%%EOF\n"
    )
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.kind == "unidentified"
    assert info.value.reason == "EPS files are not allowed"
    assert calls == []


def test_text_named_jpg_is_unidentified(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("just some text, not a picture\n" * 3)
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.kind == "unidentified" and "\n" not in str(info.value)


def test_file_errors_have_their_own_kinds(tmp_path, monkeypatch):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    cases = {
        empty: "empty",
        tmp_path / "gone.jpg": "missing",
        tmp_path / "gone" / "deeper.jpg": "missing",
        tmp_path: "unreadable",  # a directory
    }
    for path, kind in cases.items():
        for call in (read_bytes, hash_file, load_image):
            with pytest.raises(ImageError) as info:
                call(path)
            assert info.value.kind == kind, (call.__name__, path)
    assert kind_of(b"") == "empty"
    assert kind_of(str(tmp_path / "nul\0byte.jpg")) == "unreadable"
    with pytest.raises(ImageError, match="is a directory"):
        read_bytes(tmp_path)

    big = tmp_path / "big.png"
    big.write_bytes(png_header(10, 10) + bytes(2000))
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    for source in (big, big.read_bytes()):
        assert kind_of(source) == "too-large"
    with pytest.raises(ImageError) as info:
        hash_file(big)
    assert info.value.kind == "too-large" and "limit" in info.value.reason


def test_fifo_is_unreadable_and_never_blocks(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError) as info:
        read_bytes(fifo)
    assert info.value.kind == "unreadable" and "not a regular file" in info.value.reason


def test_permission_denied_is_unreadable(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root reads any file; see the monkeypatched variant below")
    path = tmp_path / "secret.jpg"
    path.write_bytes(png_header(4, 4))
    path.chmod(0)
    try:
        with pytest.raises(ImageError) as info:
            load_image(path)
        assert info.value.kind == "unreadable" and "permission denied" in info.value.reason
    finally:
        path.chmod(0o644)


def test_permission_error_from_the_os_is_unreadable(tmp_path, monkeypatch):
    path = tmp_path / "secret.jpg"
    path.write_bytes(png_header(4, 4))
    real_open = os.open

    def deny(p, *args, **kwargs):
        if os.fspath(p) == str(path):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    for call in (read_bytes, hash_file, load_image):
        with pytest.raises(ImageError) as info:
            call(path)
        assert info.value.kind == "unreadable" and "permission denied" in info.value.reason


def test_image_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(ImageError("bomb", "too big")))
    assert (err.kind, err.reason) == ("bomb", "too big")


# -- draft -----------------------------------------------------------------------------------


def test_draft_decodes_small_but_reports_full_size(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(photo_array(400, 300, seed=2)).resize((4000, 3000)).save(path, quality=85)
    img = load_image(path, draft=(256, 256))
    assert (img.width, img.height) == (4000, 3000)
    w, h = img.frames[0].size
    assert 256 <= w <= 1000 and 256 <= h <= 750  # DCT-scaled, never below the request
    full = load_image(path)
    assert full.frames[0].size == (4000, 3000)


def test_draft_on_a_rotated_jpeg_stays_upright():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(Image.fromarray(marked(2000, 1000)), "JPEG", quality=90, exif=exif)
    img = load_image(data, draft=(200, 200))
    frame = np.asarray(img.frames[0])
    assert (img.width, img.height) == (1000, 2000)
    assert frame.shape[0] > frame.shape[1] and frame.shape[1] < 1000
    assert min(frame.shape[:2]) >= 200
    assert red_corner(frame) == "top-right"


# -- decode_file and hash_file ------------------------------------------------------------


@pytest.mark.parametrize("spec", [OPEN_NSFW, IMAGENET(64)], ids=["open_nsfw", "imagenet64"])
def test_decode_file_hashes_the_bytes_and_shapes_the_pixels(photo, spec):
    path = photo("d.jpg", (640, 480), quality=90)
    out = decode_file(path, spec)
    data = path.read_bytes()
    assert out.sha256 == hashlib.sha256(data).hexdigest() and out.size == len(data)
    assert (out.width, out.height, out.format, out.n_frames) == (640, 480, "JPEG", 1)
    assert len(out.pixels) == 1
    assert out.pixels[0].shape == (*spec.input_size, 3) and out.pixels[0].dtype == np.uint8
    assert hash_file(path) == (out.sha256, len(data))


def test_decode_file_draft_stays_close_to_the_full_decode(photo):
    path = photo("d.jpg", (1600, 1200), quality=90)
    drafted = decode_file(path, OPEN_NSFW).pixels[0].astype(int)
    full = decode_file(path, OPEN_NSFW, use_draft=False).pixels[0].astype(int)
    assert np.abs(drafted - full).mean() < 6


def test_decode_file_on_an_animation_gives_one_array_per_sampled_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (30, 20), c) for c in _colours(12)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = decode_file(path, IMAGENET(16), max_frames=3)
    assert out.n_frames == 12 and len(out.pixels) == 3
    assert all(p.shape == (16, 16, 3) for p in out.pixels)
