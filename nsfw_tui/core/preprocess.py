"""A model's input recipe: resize, crop, JPEG round trip, layout and normalisation."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from PIL import Image

RESIZE_MODES = ("stretch", "shorter")
LAYOUTS = ("NHWC", "NCHW")
CHANNEL_ORDERS = ("RGB", "BGR")
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# In "shorter" mode a 1x65535 image would otherwise be resized to 224 x 14.7M pixels.
# Beyond this aspect ratio the source is centre-cropped first; the crop the network
# sees is far inside the kept part, so only the sub-pixel scale changes.
MAX_ASPECT = 4


def _pair(name: str, value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(
            f"preprocessing {name} must be two positive integers (h, w), got {value!r}"
        )
    return (value[0], value[1])


def _number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"preprocessing {name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"preprocessing {name} must be greater than 0, got {value!r}")
    return float(value)


def _triple(name: str, value: Any, *, positive: bool = False) -> tuple[float, float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise ValueError(f"preprocessing {name} must be three numbers, got {value!r}")
    a, b, c = (_number(name, v, positive=positive) for v in value)
    return (a, b, c)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"preprocessing {name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """Everything needed to turn an RGB image into the network's input tensor."""

    resize: tuple[int, int]
    """(h, w) for "stretch"; for "shorter" the shorter side goes to resize[0]."""
    resize_mode: str = "stretch"
    crop: tuple[int, int] | None = None
    """Centre crop (h, w) after the resize; required in "shorter" mode."""
    resample: str = "bilinear"
    jpeg_reencode: bool = False
    """open_nsfw's JPEG save/reopen after the crop, which its scores depend on."""
    jpeg_quality: int = 75
    layout: str
    channel_order: str
    scale: float
    """Multiplier applied to 0..255 values before mean and std."""
    mean: tuple[float, float, float]
    """In channel_order order, in scaled units."""
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise lists/ints once, here
        set_(self, "resize", _pair("resize", self.resize))
        _choice("resize_mode", self.resize_mode, RESIZE_MODES)
        if self.crop is not None:
            set_(self, "crop", _pair("crop", self.crop))
        _choice("resample", self.resample, tuple(RESAMPLE))
        if not isinstance(self.jpeg_reencode, bool):
            raise ValueError(
                f"preprocessing jpeg_reencode must be true or false, got {self.jpeg_reencode!r}"
            )
        q = self.jpeg_quality
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100:
            raise ValueError(f"preprocessing jpeg_quality must be an integer 1..100, got {q!r}")
        _choice("layout", self.layout, LAYOUTS)
        _choice("channel_order", self.channel_order, CHANNEL_ORDERS)
        set_(self, "scale", _number("scale", self.scale, positive=True))
        set_(self, "mean", _triple("mean", self.mean))
        set_(self, "std", _triple("std", self.std, positive=True))
        if self.resize_mode == "shorter" and self.crop is None:
            raise ValueError('preprocessing resize_mode "shorter" needs a crop (fixed input size)')
        if self.crop is not None:
            limit = (
                (self.resize[0], self.resize[0]) if self.resize_mode == "shorter" else self.resize
            )
            if self.crop[0] > limit[0] or self.crop[1] > limit[1]:
                raise ValueError(
                    f"preprocessing crop {self.crop} is larger than the resized image {limit}"
                )

    @property
    def input_size(self) -> tuple[int, int]:
        """(h, w) of the image the network sees."""
        return self.crop if self.crop is not None else self.resize

    def draft_size(self) -> tuple[int, int]:
        """(w, h) to ask of JPEG draft mode: never smaller than the resize target."""
        if self.resize_mode == "shorter":
            return (self.resize[0], self.resize[0])
        return (self.resize[1], self.resize[0])

    def _resized(self, img: Image.Image) -> Image.Image:
        resample = RESAMPLE[self.resample]
        if self.resize_mode == "stretch":
            return img.resize((self.resize[1], self.resize[0]), resample=resample)
        w, h = img.size
        short, long = min(w, h), max(w, h)
        if long > short * MAX_ASPECT:
            keep = short * MAX_ASPECT
            if w > h:
                left = (w - keep) // 2
                img = img.crop((left, 0, left + keep, h))
            else:
                top = (h - keep) // 2
                img = img.crop((0, top, w, top + keep))
            w, h = img.size
            long = keep
        s = self.resize[0]
        # int() truncation of the long side, as torchvision's Resize(int) does
        other = int(s * long / short)
        size = (s, other) if w <= h else (other, s)
        return img.resize(size, resample=resample)

    def pixels(self, img: Image.Image) -> np.ndarray:
        """uint8 (H, W, 3) RGB after resize, centre crop and the optional JPEG round trip."""
        if img.mode != "RGB":
            img = img.convert("RGB")
        img = self._resized(img)
        if self.crop is not None:
            ch, cw = self.crop
            # torchvision's center_crop offsets
            top = round((img.height - ch) / 2.0)
            left = round((img.width - cw) / 2.0)
            img = img.crop((left, top, left + cw, top + ch))
        if self.jpeg_reencode:
            with io.BytesIO() as buf:
                img.save(buf, format="JPEG", quality=self.jpeg_quality)
                buf.seek(0)
                with Image.open(buf, formats=("JPEG",)) as reopened:
                    return np.array(reopened.convert("RGB"), dtype=np.uint8)
        return np.array(img, dtype=np.uint8)

    def tensor(self, pixels: np.ndarray) -> np.ndarray:
        """float32 batch in layout and channel order from uint8 (N, H, W, 3) RGB pixels."""
        if pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"pixels must have shape (N, H, W, 3), got {pixels.shape}")
        x = pixels.astype(np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        x = x * np.float32(self.scale)
        x = (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (tuples become lists)."""
        d = asdict(self)
        for key in ("resize", "crop", "mean", "std"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Rebuild from to_dict() output; ValueError names the bad or missing key."""
        if not isinstance(d, Mapping):
            raise ValueError(f"preprocessing must be a mapping, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown preprocessing key(s): {', '.join(map(str, unknown))}")
        for required in ("resize", "layout", "channel_order", "scale", "mean", "std"):
            if required not in d:
                raise ValueError(f"preprocessing is missing {required!r}")
        return cls(**dict(d))


OPEN_NSFW = Preprocessing(
    resize=(256, 256),
    resize_mode="stretch",
    crop=(224, 224),
    jpeg_reencode=True,
    layout="NHWC",
    channel_order="BGR",
    scale=1.0,
    mean=(104.0, 117.0, 123.0),
    std=(1.0, 1.0, 1.0),
)


def IMAGENET(size: int = 200) -> Preprocessing:
    """Stretch to size x size, RGB NCHW in 0..1 with ImageNet mean and std (timm's default)."""
    return Preprocessing(
        resize=(size, size),
        resize_mode="stretch",
        crop=None,
        layout="NCHW",
        channel_order="RGB",
        scale=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
