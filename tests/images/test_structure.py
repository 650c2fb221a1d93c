"""Completeness by structure (P12): zero-tailed and cut files are truncated; valid ones never."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms
from support.imagegen import photo_array

from nsfw_tui.core import structure
from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.images import ALLOWED_FORMATS, decode_file, load_image
from nsfw_tui.core.preprocess import IMAGENET


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def picture(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    return Image.fromarray(photo_array(w, h, seed)).convert(mode)


def zero_tail(data: bytes, cut: int) -> bytes:
    """The file as a preallocated download leaves it: full length, zeros from ``cut`` on."""
    return data[:cut] + bytes(len(data) - cut)


def refusal(data: bytes) -> ImageError:
    with pytest.raises(ImageError) as caught:
        load_image(data)
    return caught.value


def assert_truncated(data: bytes, label: str = "") -> ImageError:
    err = refusal(data)
    assert err.kind == "truncated", (label, err.kind, err.reason)
    return err


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


# -- P12: zero tails and cuts are truncated -------------------------------------------------

JPEG_SETTINGS = [
    {"quality": 95},
    {"quality": 75, "subsampling": 2},
    {"quality": 40, "subsampling": 1},
    {"quality": 90, "progressive": True},
    {"quality": 85, "optimize": True},
    {"quality": 60, "progressive": True, "optimize": True, "subsampling": 0},
    {"quality": 92, "restart_marker_rows": 1},
    {"quality": 80, "exif": b"Exif\0\0MM\0*\0\0\0\x08\0\0"},
]
SIZES = [(64, 48), (160, 120), (333, 211), (640, 480), (97, 701)]


def _zero_tailed_jpegs() -> list[tuple[str, bytes]]:
    """40 files: 8 encoder settings x 5 sizes, each cut at another point of its bytes."""
    out = []
    for i, settings in enumerate(JPEG_SETTINGS):
        for j, (w, h) in enumerate(SIZES):
            data = encoded(picture(w, h, seed=i * 5 + j), "JPEG", **settings)
            sos = data.index(b"\xff\xda")
            k = i * 5 + j
            if k % 10 == 0:
                cut = len(data) - 2  # only the EOI marker is missing
            elif k % 10 == 1:
                cut = sos  # the scan never arrived
            elif k % 10 == 2:
                cut = len(data) // 10  # inside the headers or the first scan
            else:
                cut = sos + (len(data) - sos) * (k % 10) // 10
            out.append((f"{settings}-{w}x{h}-cut{cut}", zero_tail(data, cut)))
    return out


def test_forty_zero_tailed_jpegs_are_all_truncated():
    files = _zero_tailed_jpegs()
    assert len(files) == 40
    for label, data in files:
        err = assert_truncated(data, label)
        assert "zeros" in err.reason, (label, err.reason)


def test_zeros_where_the_eoi_should_be_are_named_in_the_reason():
    data = encoded(picture(120, 90), "JPEG", quality=90)
    err = assert_truncated(zero_tail(data, len(data) - 2))
    assert err.reason == (
        "JPEG file is incomplete: its image data ends without an end-of-image marker, and its "
        "last 2 bytes are zeros (an interrupted or preallocated download)"
    )


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.3, 0.5, 0.8, 0.95, 0.999])
def test_png_cut_before_iend_is_truncated(fraction):
    for mode in ("RGB", "RGBA", "L", "P"):
        data = encoded(picture(200, 150, seed=3, mode=mode), "PNG")
        cut = max(9, int(len(data) * fraction))
        assert_truncated(zero_tail(data, cut), f"{mode} zero tail at {cut}")
        assert_truncated(data[:cut], f"{mode} cut at {cut}")
    iend = data.rindex(b"IEND") - 4
    err = assert_truncated(zero_tail(data, iend))
    assert "zeros" in err.reason


def _webp_with_metadata() -> bytes:
    """A VP8X WebP whose EXIF and XMP chunks follow the image data, as cameras write them."""
    exif = Image.Exif()
    exif[0x010E] = "a description " * 100
    return encoded(picture(160, 120, seed=4), "WEBP", exif=exif.tobytes(), xmp=b"<x/>" * 300)


def test_webp_with_a_wrong_riff_size_or_a_zero_tail_is_truncated():
    plain = encoded(picture(160, 120, seed=5), "WEBP", quality=80)
    longer = plain[:4] + struct.pack("<I", len(plain)) + plain[8:]  # claims 8 bytes more
    err = assert_truncated(longer)
    assert "header says" in err.reason
    assert_truncated(plain[: len(plain) // 2], "cut in its image chunk")
    shorter = plain[:4] + struct.pack("<I", len(plain) - 40) + plain[8:]
    assert_truncated(shorter, "image chunk past the RIFF size")
    # a preallocated file: the header holds the full size, zeros where the next chunk goes
    padded = plain + bytes(4096)
    padded = padded[:4] + struct.pack("<I", len(padded) - 8) + padded[8:]
    assert "zeros" in assert_truncated(padded).reason

    # zeros inside the last chunk cannot be told from data; zeros over a chunk header can
    meta = _webp_with_metadata()
    for cut in range(meta.index(b"EXIF"), meta.index(b"XMP ") + 4, 97):
        assert_truncated(zero_tail(meta, cut), f"metadata zeroed from {cut}")

    frames = [picture(64, 48, seed=s) for s in range(5)]
    anim = encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    last = anim.rindex(b"ANMF")
    for cut in range(20, last + 24, max(1, last // 25)):
        assert_truncated(zero_tail(anim, cut), f"animation zeroed from {cut}")


def test_gif_without_its_trailer_is_truncated():
    frames = [picture(96, 64, seed=s).quantize(64) for s in range(4)]
    for data in (
        encoded(frames[0], "GIF"),
        encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0),
    ):
        assert data.endswith(b";")
        err = assert_truncated(data[:-1])
        assert "trailer" in err.reason
        for fraction in (0.05, 0.3, 0.6, 0.9, 0.999):
            cut = max(14, int(len(data) * fraction))
            assert_truncated(zero_tail(data, cut), f"zero tail at {cut}")
            assert_truncated(data[:cut], f"cut at {cut}")


def test_tiff_bmp_and_avif_whose_declared_data_lies_past_the_end_are_truncated():
    img = picture(120, 80, seed=6)
    # libtiff writes the directory after the pixels: zeros there leave an empty directory
    lzw = encoded(img, "TIFF", compression="tiff_lzw")
    assert "empty" in assert_truncated(zero_tail(lzw, len(lzw) // 2)).reason
    raw = encoded(img, "TIFF")
    for cut in (len(raw) // 2, len(raw) - 1):
        assert_truncated(raw[:cut], f"raw TIFF cut at {cut}")
    pages = encoded(img, "TIFF", save_all=True, append_images=[img.rotate(90)] * 2)
    second = len(pages) * 2 // 3
    assert_truncated(zero_tail(pages, second), "later pages zeroed")
    bmp = encoded(img, "BMP")
    assert "past the end" in assert_truncated(bmp[: len(bmp) - 7]).reason
    if "AVIF" in ALLOWED_FORMATS:
        avif = encoded(img, "AVIF")
        assert_truncated(avif[: len(avif) - 5], "AVIF cut inside its data box")


def test_every_walker_says_none_for_nothing_and_a_reason_for_each_cut():
    img = picture(48, 32, seed=7)
    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"):
        data = encoded(img, fmt)
        assert structure.incomplete(data) is None, fmt
        assert structure.incomplete(data, fmt) is None, fmt
        for cut in range(1, len(data), max(1, len(data) // 50)):
            reason = structure.incomplete(data[:cut])
            if reason is not None:
                assert reason.startswith(f"{fmt} file is incomplete: "), reason
    assert structure.incomplete(b"plain text") is None  # not an image: the decoder says so


# -- every face gets the check through the one loader -----------------------------------------


def test_decode_file_refuses_a_zero_tail_and_keeps_its_hash(tmp_path):
    """decode_file is what scan and watch decode with (through the decode pool)."""
    data = encoded(picture(160, 120), "JPEG", quality=90)
    path = tmp_path / "downloading.jpg"
    path.write_bytes(zero_tail(data, len(data) * 3 // 4))
    with pytest.raises(ImageError) as caught:
        decode_file(path, IMAGENET(32))
    assert caught.value.kind == "truncated" and caught.value.sha256 and caught.value.size


def test_the_serve_decoder_refuses_a_zero_tail():
    from nsfw_tui.core.images import Failed
    from nsfw_tui.serve.decoders import decode_task

    data = encoded(picture(160, 120), "PNG")
    result = decode_task(
        ("bytes", "up.png", zero_tail(data, len(data) // 2)), IMAGENET(32), True, 1
    )
    assert isinstance(result, Failed) and result.error.kind == "truncated"


# -- valid files are never refused -------------------------------------------------------------

MODES_BY_FORMAT = {
    "JPEG": ["L", "RGB", "CMYK"],
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "WEBP": ["L", "RGB", "RGBA"],
    "GIF": ["1", "L", "P", "RGB"],
    "BMP": ["1", "L", "P", "RGB", "RGBA"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"],
    "AVIF": ["L", "RGB", "RGBA"],
}
OPTIONS_BY_FORMAT = {
    "JPEG": [
        {},
        {"quality": 5},
        {"quality": 100, "subsampling": 0},
        {"progressive": True},
        {"optimize": True},
        {"progressive": True, "optimize": True, "quality": 30, "subsampling": 2},
        {"restart_marker_blocks": 1},
        {"restart_marker_rows": 2, "progressive": True},
        {"comment": b"\xff\xd9 an EOI inside a comment"},
    ],
    "PNG": [{}, {"optimize": True}, {"compress_level": 0}, {"compress_level": 9}],
    "WEBP": [
        {},
        {"quality": 1},
        {"quality": 100},
        {"lossless": True},
        {"lossless": True, "method": 0},
        {"method": 6},
        {"lossless": True, "exact": True},
    ],
    "GIF": [{}, {"interlace": False}, {"optimize": True}, {"comment": b"c" * 300}],
    "BMP": [{}],
    "TIFF": [
        {},
        {"compression": "tiff_lzw"},
        {"compression": "tiff_adobe_deflate"},
        {"compression": "packbits"},
        {"big_tiff": True},
    ],
    "AVIF": [{}, {"quality": 10}, {"quality": 95, "subsampling": "4:4:4"}],
}


def _mode_image(mode: str, seed: int, size=(67, 45)) -> Image.Image:
    base = picture(*size, seed=seed)
    if mode == "I;16":
        return Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    if mode == "P":
        return base.quantize(200)
    return base.convert(mode)


def _valid_files():
    """Every format and mode with each encoder setting, plus metadata and animations."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "x" * 500
    for fmt, modes in MODES_BY_FORMAT.items():
        if fmt not in ALLOWED_FORMATS:
            continue
        for i, mode in enumerate(modes):
            for j, options in enumerate(OPTIONS_BY_FORMAT[fmt]):
                img = _mode_image(mode, seed=i * 10 + j, size=(67 + j, 45 + i))
                try:
                    data = encoded(img, fmt, **options)
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # a mode this encoder cannot write with these options
                yield f"{fmt}/{mode}/{options}", data
        rgb = picture(80, 60, seed=99)
        if fmt in ("JPEG", "PNG", "WEBP", "TIFF", "AVIF"):
            yield f"{fmt}/icc+exif", encoded(rgb, fmt, icc_profile=icc, exif=exif.tobytes())
        if fmt in ("PNG", "WEBP", "GIF", "AVIF"):
            frames = [picture(40, 30, seed=s) for s in range(6)]
            for lossless in (False, True):
                extra = {"lossless": lossless} if fmt == "WEBP" else {}
                data = encoded(
                    frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, **extra
                )
                yield f"{fmt}/animated/{extra}", data
    for w, h in ((1, 1), (8, 8), (1023, 17), (17, 1023)):
        for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"):
            yield f"{fmt}/{w}x{h}", encoded(picture(w, h, seed=w), fmt)
    # multi-page files: only the first page is scored, all pages must be whole
    pages = [picture(50, 40, seed=s) for s in range(3)]
    yield "TIFF/pages", encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    yield "MPO", encoded(pages[0], "MPO", save_all=True, append_images=pages[1:])


def test_a_large_set_of_valid_files_is_never_refused():
    seen = 0
    for label, data in _valid_files():
        assert structure.incomplete(data) is None, label
        try:
            load_image(data)
        except ImageError as exc:
            pytest.fail(f"{label}: {exc}")
        seen += 1
    print(f"\nP12 valid files: {seen} loaded, none refused")
    assert seen >= 190


def test_real_world_quirks_are_accepted():
    img = picture(120, 90, seed=8)
    jpeg = encoded(img, "JPEG", quality=90)
    # fill bytes before markers, which the standard allows and some encoders write
    filled = jpeg.replace(b"\xff\xda", b"\xff\xff\xff\xda", 1)
    filled = filled[:-2] + b"\xff\xff\xff\xd9"
    # data after the EOI: a phone's motion photo appends a video, MPO a second image
    motion = jpeg + b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 40
    padded = jpeg + bytes(4096)  # zeros after the EOI are outside the image
    # a thumbnail JPEG inside an APPn segment, EOI and all: walked over by its length
    thumb = encoded(picture(40, 30, seed=2), "JPEG", quality=70)
    thumbed = jpeg[:2] + b"\xff\xef" + struct.pack(">H", len(thumb) + 2) + thumb + jpeg[2:]
    # stray bytes before a marker, which libjpeg skips with a warning
    dqt = jpeg.index(b"\xff\xdb")
    stray = jpeg[:dqt] + b"\x12\x34" + jpeg[dqt:]
    png = encoded(img, "PNG")
    png_trailing = png + b"trailing bytes after IEND" + bytes(100)
    png_text = png[:33] + png_chunk(b"tEXt", b"Comment\0odd-sized text!") + png[33:]
    for label, data in [
        ("jpeg fill bytes", filled),
        ("jpeg motion photo", motion),
        ("jpeg zeros after EOI", padded),
        ("jpeg thumbnail in APP15", thumbed),
        ("jpeg stray bytes", stray),
        ("png trailing data", png_trailing),
        ("png odd text chunk", png_text),
        ("16-bit png", encoded(_mode_image("I;16", 1), "PNG")),
    ]:
        assert structure.incomplete(data) is None, label
        load_image(data)
    # the thumbnail's EOI does not stand in for the main image's
    err = assert_truncated(zero_tail(thumbed, len(thumbed) - 200))
    assert "end-of-image" in err.reason


def test_webp_with_odd_sized_chunks_and_their_pad_bytes_is_accepted():
    webp = encoded(picture(64, 48, seed=9), "WEBP", xmp=b"<x:xmpmeta>odd</x:xmpmeta>!")
    assert webp.endswith(b"!\0")  # the XMP chunk is odd-sized: a pad byte follows it
    assert structure.incomplete(webp) is None
    load_image(webp)
    # without the pad byte libwebp itself refuses the file, whatever its RIFF size says
    assert refusal(webp[:-1]).kind == "truncated"


def test_mpo_with_a_zero_tailed_second_image_is_scored_by_its_first():
    a, b = picture(80, 60, seed=10), picture(80, 60, seed=11)
    mpo = encoded(a, "MPO", save_all=True, append_images=[b])
    second = mpo.index(b"\xff\xd8", 2 + mpo.index(b"\xff\xd9", mpo.index(b"\xff\xda")))
    loaded = load_image(zero_tail(mpo, second + (len(mpo) - second) // 2))
    assert loaded.format == "MPO" and len(loaded.frames) == 1
    err = assert_truncated(zero_tail(mpo, second - 10))
    assert "end-of-image" in err.reason
