"""Phone photos: HEIC through the decode-only pi-heif, registered on first use, and AVIF."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, features
from support.tui import RedScorer

from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.images import ALLOWED_FORMATS, is_media_name, load_image
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.core.store import Store

# 64x48, left half (220, 30, 30), right half (30, 30, 220); encoded once with pillow-heif
HEIC = Path(__file__).parent / "data" / "two_halves.heic"


def test_the_heic_fixture_decodes_upright_with_its_colours():
    loaded = load_image(HEIC)
    assert (loaded.format, loaded.width, loaded.height, loaded.n_frames) == ("HEIF", 64, 48, 1)
    (frame,) = loaded.frames
    left, right = frame.getpixel((8, 24)), frame.getpixel((56, 24))
    assert frame.mode == "RGB"
    assert left[0] > 200 and left[2] < 50 and right[2] > 200 and right[0] < 50


def test_a_heic_with_exif_orientation_6_is_turned_once():
    # the same picture stored with EXIF orientation 6 (turn 90 degrees clockwise to show)
    loaded = load_image(HEIC.with_name("two_halves_orientation6.heic"))
    (frame,) = loaded.frames
    assert (loaded.width, loaded.height) == frame.size == (48, 64)
    top, bottom = frame.getpixel((24, 8)), frame.getpixel((24, 56))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200 and bottom[0] < 50


def test_heif_opener_is_registered_only_when_a_file_is_loaded():
    code = (
        "import sys\n"
        "from nsfw_tui.core import images\n"
        "assert 'pi_heif' not in sys.modules, 'imported with the loader'\n"
        f"print(images.load_image({str(HEIC)!r}).format)\n"
        "assert 'pi_heif' in sys.modules\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "HEIF"


def test_heic_and_avif_are_allowed_by_name_and_by_format():
    assert {"HEIF", "AVIF"} <= set(ALLOWED_FORMATS)
    assert all(is_media_name(n) for n in ("a.HEIC", "b.heif", "c.hif", "d.avif"))


def test_a_cut_heic_is_truncated_never_decoded(tmp_path):
    data = HEIC.read_bytes()
    cut = tmp_path / "cut.heic"
    cut.write_bytes(data[: len(data) - 60])  # the coded image data lies at the end
    with pytest.raises(ImageError) as info:
        load_image(cut)
    assert info.value.kind == "truncated" and "HEIF" in info.value.reason


def test_phone_photos_are_scored_end_to_end(tmp_path):
    folder = tmp_path / "phone"
    folder.mkdir()
    shutil.copy(HEIC, folder / "IMG_0001.HEIC")
    if features.check("avif"):
        Image.new("RGB", (40, 30), (230, 10, 10)).save(folder / "red.avif", quality=90)
    with Store.open(tmp_path / "home" / "store.db") as store:
        result = scan_folder(folder, RedScorer(), store, ScanOptions(workers=2))
        got = {Path(i.path).name: i for i in result.items}
        assert result.errors == 0, [(n, i.error) for n, i in got.items()]
        # half red, half blue: the red scorer sees the mean red channel
        assert got["IMG_0001.HEIC"].probability == pytest.approx(125 / 255, abs=0.03)
        assert got["IMG_0001.HEIC"].frame_time is None
        assert store.image(got["IMG_0001.HEIC"].sha256).format == "HEIF"
        if features.check("avif"):
            assert got["red.avif"].probability == pytest.approx(230 / 255, abs=0.03)
