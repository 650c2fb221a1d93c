"""The two classifiers: the baseline CNN and a timm ConvNeXt with a new one-logit head."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelConfigError, WeightsUnavailableError

log = logging.getLogger(__name__)

BASELINE = "baseline_cnn"
POOL = 4  # the baseline's default pooled grid (model.pool)
POOL_KINDS = ("max", "avg")  # model.pool_kind; the first is the default
FORWARD = "model.pretrained=false"
LOCAL = "model.weights=PATH"


class BaselineCNN(nn.Module):
    """Conv + ReLU + max-pool blocks, then a dense head: the original project's baseline.

    ``pool`` reduces the last feature map to a ``pool`` x ``pool`` grid before the dense
    head, by max (``pool_kind="max"``, the default) or average. Flattening the whole map
    (``pool=0``, the original's layout) puts about 20M weights behind a 200x200 input; the
    pooled head has about 130k. Averaging a 50x50 map to 4x4 washes out small, local
    responses and generalised worse in benchmarks/baseline_generalisation.py; max keeps
    them and matches the flattening head there.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        channels: tuple[int, ...] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.3,
        pool: int = POOL,
        pool_kind: str = POOL_KINDS[0],
    ) -> None:
        super().__init__()
        h, w = input_size
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, h, w = c_out, h // 2, w // 2
        if h < 1 or w < 1:
            raise ModelConfigError(
                f"data.input_size {list(input_size)} is too small for {len(channels)} pooling "
                f"blocks; use at least {2 ** len(channels)} pixels a side"
            )
        self.features = nn.Sequential(*layers)
        self.pool_kind = pool_kind
        # no weights here, so the state-dict keys stay those of the unpooled checkpoints
        self.pool: nn.Module = nn.Identity()
        if pool_kind not in POOL_KINDS:
            raise ModelConfigError(
                f"model.pool_kind: expected one of {', '.join(POOL_KINDS)}, got {pool_kind!r}"
            )
        if pool > 0:
            h, w = min(pool, h), min(pool, w)
            adaptive = nn.AdaptiveMaxPool2d if pool_kind == "max" else nn.AdaptiveAvgPool2d
            self.pool = adaptive((h, w))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * h * w, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x))).squeeze(1)


class ConvNextClassifier(nn.Module):
    """A timm ConvNeXt backbone (pooled features) with LayerNorm + Dropout + Linear on top."""

    def __init__(self, backbone: nn.Module, dropout: float = 0.3, head_norm: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        width = int(backbone.num_features)  # type: ignore[arg-type]
        self.head = nn.Sequential(
            nn.LayerNorm(width) if head_norm else nn.Identity(),
            nn.Dropout(dropout),
            nn.Linear(width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)).squeeze(1)


def _get(cfg: Mapping[str, Any], key: str, default: Any) -> Any:
    value = cfg.get(key, default)  # a DictConfig or a plain dict (from a checkpoint's JSON)
    return default if value is None else value


def convnext_names() -> list[str]:
    import timm

    return timm.list_models("convnext*")


def build_model(model_cfg: Any, input_size: tuple[int, int]) -> nn.Module:
    """The model named by ``model_cfg.name``; its output is one logit per image, shape (N,).

    ``baseline_cnn`` or any timm ConvNeXt name (``convnext_tiny``, ``convnext_atto``, ...,
    optionally with a pretrained tag such as ``convnext_tiny.fb_in1k``). ``model_cfg`` is the
    loaded `model:` section, whose schema has checked its ranges, or a checkpoint's copy of it.
    """
    name = str(_get(model_cfg, "name", ""))
    h, w = (int(v) for v in input_size)
    dropout = float(_get(model_cfg, "dropout", 0.3))
    if name == BASELINE:
        channels = tuple(int(c) for c in _get(model_cfg, "channels", (32, 64)))
        hidden = int(_get(model_cfg, "hidden", 128))
        pool = int(_get(model_cfg, "pool", POOL))
        pool_kind = str(_get(model_cfg, "pool_kind", POOL_KINDS[0]))
        return BaselineCNN((h, w), channels, hidden, dropout, pool, pool_kind)

    known = convnext_names()
    if name.split(".")[0] not in known:
        raise ModelConfigError(
            f"unknown model.name {name!r}: use {BASELINE} or a timm ConvNeXt such as "
            f"convnext_tiny (also {', '.join(n for n in known if 'atto' in n or 'nano' in n)})"
        )
    if min(h, w) < 32:
        raise ModelConfigError(
            f"data.input_size {[h, w]} is too small for {name}: ConvNeXt needs 32 pixels a side"
        )
    backbone = _convnext_backbone(
        name, bool(_get(model_cfg, "pretrained", False)), _get(model_cfg, "weights", None)
    )
    freeze_stages(backbone, int(_get(model_cfg, "freeze_stages", 0)))
    return ConvNextClassifier(backbone, dropout, bool(_get(model_cfg, "head_norm", True)))


def freeze_stages(backbone: nn.Module, stages: int) -> None:
    """Freeze the stem and the lowest ``stages`` stages (0 trains everything).

    Lower stages hold generic edges and textures that ImageNet already taught; freezing
    them keeps a small labelled set from overwriting them and speeds up each step.
    """
    blocks = backbone.stages  # type: ignore[attr-defined]
    if not 0 <= stages <= len(blocks):
        raise ModelConfigError(
            f"model.freeze_stages: expected 0..{len(blocks)} for this backbone, got {stages}"
        )
    if stages == 0:
        return
    for module in (backbone.stem, *blocks[:stages]):  # type: ignore[attr-defined]
        for param in module.parameters():
            param.requires_grad_(False)


def _convnext_backbone(name: str, pretrained: bool, weights: str | None) -> nn.Module:
    import timm

    if weights:
        # an explicit local file wins: the person asked for exactly these weights
        return _from_file(name, Path(str(weights)).expanduser())
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=0)
    return _from_file(name, Path(_hub_weights(name)))


def _from_file(name: str, path: Path) -> nn.Module:
    import timm

    if not path.is_file():
        raise WeightsUnavailableError(f"model.weights: {path} is not a file")
    try:
        # timm's own loader: it drops the ImageNet classifier and maps original
        # checkpoints onto its layout; non-safetensors files load with weights_only=True
        return timm.create_model(
            name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)}
        )
    except Exception as exc:  # safetensors, torch and timm each raise their own types
        first = str(exc).strip().splitlines()
        detail = " ".join(first[:2]) if first else type(exc).__name__
        raise WeightsUnavailableError(
            f"cannot load the weights file {path} into {name}: {detail[:300]}"
        ) from exc


def _hub_weights(name: str) -> str:
    """A local path to timm's ImageNet weights for ``name``: the HF cache, else a download.

    huggingface_hub retries a refused connection with back-off for about 20 s per file and
    timm asks for two files, so with no network a plain ``pretrained=True`` sits for most
    of a minute. One probe of the endpoint first turns that into a prompt, clear error.
    """
    import timm
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise WeightsUnavailableError(
            f"timm has no downloadable ImageNet weights for {name}; train with {FORWARD} "
            f"or give a local weights file with {LOCAL}"
        )
    repo, _, revision = repo.partition("@")
    filename = getattr(cfg, "hf_hub_filename", None) or "model.safetensors"
    cached = try_to_load_from_cache(repo, filename, revision=revision or None)
    if isinstance(cached, str):
        return cached
    endpoint = constants.ENDPOINT
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set and they are not in the local cache"
    else:
        reason = _unreachable(endpoint, float(constants.HF_HUB_ETAG_TIMEOUT))
    if not reason:
        try:
            log.info("downloading ImageNet weights for %s from %s", name, endpoint)
            return hf_hub_download(repo, filename, revision=revision or None)
        except Exception as exc:  # huggingface_hub raises many network and HTTP types
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    raise WeightsUnavailableError(
        f"cannot download the ImageNet weights for {name} from {endpoint} ({reason}); "
        f"train without them with {FORWARD}, or give a local weights file with {LOCAL}"
    )


def _unreachable(endpoint: str, timeout: float) -> str:
    """Why the hub cannot be reached, or "" when it answers (any HTTP status counts)."""
    import urllib.error
    import urllib.request

    try:
        request = urllib.request.Request(endpoint, method="HEAD")
        with urllib.request.urlopen(request, timeout=max(1.0, min(timeout, 10.0))):
            return ""
    except urllib.error.HTTPError:
        return ""  # it answered: the network is there
    except urllib.error.URLError as exc:
        return f"no connection: {getattr(exc.reason, 'strerror', None) or exc.reason}"
    except (OSError, ValueError) as exc:
        return f"no connection: {exc}"
