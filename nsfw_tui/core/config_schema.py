"""The config schema: one dataclass per section, with each setting's type, default and rule."""

# configs/<group>.yaml writes these defaults out with a comment per key, and
# tests/core/test_config.py checks that every file and its dataclass agree. The loader
# (core/config.py) reads the dataclasses as OmegaConf structured configs; commands get their
# typed objects from them (`ScanOptions` and `WatchOptions` extend `ScanConfig` and
# `WatchConfig`, adapt `Settings` extends `AdaptConfig`). Only dataclasses here: core.scan
# and the watcher import this module, so it must stay cheap.

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .config_rules import Check, OneOf, Range, Section, setting
from .errors import ConfigError

# Metrics a run records on the validation split that can pick the best checkpoint.
MONITORS = ("val_loss", "val_auroc", "val_accuracy", "val_recall", "val_precision")
# Precisions the training loop implements (Lightning's names); 16-mixed needs a CUDA GPU.
PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The adapted head's forms: logistic regression, or one hidden layer with ReLU.
HEAD_KINDS = ("logreg", "mlp")

POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1)
DROPOUT = Range(0, 1, high_open=True)
SIZE = Check("[height, width] in pixels", lambda v: len(v) == 2 and min(v) >= 1)


def _device_ids(value: Any) -> bool:
    if value == "auto" or (type(value) is int and value >= 1):
        return True
    ids = list(value) if not isinstance(value, str) else []  # a ListConfig from the config
    return bool(ids) and all(type(i) is int and i >= 0 for i in ids)


DEVICES = Check("auto, a positive integer or a list of device ids like [0]", _device_ids)


# -- data --------------------------------------------------------------------------------------


@dataclass
class SplitConfig:
    val_fraction: float = setting(0.2, FRACTION)
    """Share of labelled images held out for validation (stratified)."""
    seed: int = 42
    """Seed of the split, so val stays the same across runs."""


@dataclass
class CropConfig:
    scale: list[float] = setting([0.7, 1.0])
    """Min and max share of the image area kept by the random crop."""


@dataclass
class ColorJitterConfig:
    brightness: float = setting(0.2, Range(0))
    """Max relative brightness change."""
    contrast: float = setting(0.2, Range(0))
    """Max relative contrast change."""
    saturation: float = setting(0.2, Range(0))
    """Max relative saturation change."""
    hue: float = setting(0.02, Range(0, 0.5))
    """Max hue shift; small so skin tones stay plausible."""


@dataclass
class BlurConfig:
    kernel_size: int = setting(3, Check("an odd integer >= 1", lambda v: v >= 1 and v % 2 == 1))
    """Blur kernel size in pixels."""
    sigma: list[float] = setting([0.1, 1.5])
    """Min and max blur sigma."""
    p: float = setting(0.2, FRACTION)
    """Probability of applying the blur."""


@dataclass
class AugmentConfig:
    random_resized_crop: CropConfig = field(default_factory=CropConfig)
    horizontal_flip: float = setting(0.5, FRACTION)
    """Probability of a horizontal flip."""
    rotation_degrees: float = setting(15.0, Range(0))
    """Random rotation range, plus or minus degrees."""
    color_jitter: ColorJitterConfig = field(default_factory=ColorJitterConfig)
    gaussian_blur: BlurConfig = field(default_factory=BlurConfig)


@dataclass
class DataConfig(Section):
    """Train/val split, input size, normalisation and train-time augmentation."""

    KEY: ClassVar[str] = "data"
    split: SplitConfig = field(default_factory=SplitConfig)
    input_size: list[int] = setting([200, 200], SIZE)
    """[height, width] the images are resized to."""
    num_workers: int = setting(0, Range(0))
    """DataLoader workers; 0 because forking a threaded TUI process can deadlock."""
    mean: list[float] = setting([0.485, 0.456, 0.406])
    """Per-channel normalisation mean (ImageNet, what the backbone saw)."""
    std: list[float] = setting([0.229, 0.224, 0.225])
    """Per-channel normalisation std (ImageNet)."""
    folder: str | None = None
    """Train only on labelled images under this folder; None: all of them."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# -- models ------------------------------------------------------------------------------------


@dataclass
class ConvNextConfig(Section):
    """ConvNext-Tiny (or another timm ConvNeXt) with a new binary head (model.yaml)."""

    KEY: ClassVar[str] = "model"
    name: str = "convnext_tiny"
    """timm model name."""
    pretrained: bool = True
    """Start from ImageNet weights (timm's download, or `weights`)."""
    weights: str | None = None
    """Local weights file to load instead of downloading; None: timm's own."""
    freeze_stages: int = setting(2, Range(0))
    """Lower backbone stages kept frozen (0 trains everything)."""
    dropout: float = setting(0.3, DROPOUT)
    """Dropout before the classifier."""
    head_norm: bool = True
    """LayerNorm on the pooled features before the classifier."""


@dataclass
class BaselineConfig(Section):
    """The baseline CNN: two conv blocks and a small dense head (model_baseline.yaml)."""

    KEY: ClassVar[str] = "model"
    name: str = "baseline_cnn"
    """Selects the baseline architecture."""
    channels: list[int] = setting(
        [32, 64], Check("a list of positive integers", lambda v: len(v) > 0 and min(v) >= 1)
    )
    """Output channels of each conv + ReLU + max-pool block."""
    pool: int = setting(4, Range(0))
    """Grid side the last feature map is pooled to before the dense layers; 0 flattens it."""
    pool_kind: str = setting("max", OneOf("max", "avg"))
    """How that grid is pooled: max keeps each cell's strongest response, avg its mean."""
    hidden: int = setting(128, Range(1))
    """Width of the hidden dense layer."""
    dropout: float = setting(0.3, DROPOUT)
    """Dropout before the classifier."""


@dataclass
class AdaptModelConfig(Section):
    """The model of config_adapt: a head over frozen features, not a timm model."""

    KEY: ClassVar[str] = "model"
    name: str = "adapt"
    """Names the adapted head in runs and logs."""


# -- training ----------------------------------------------------------------------------------


@dataclass
class TrainingConfig(Section):
    """The training loop: batch, epochs, reproducibility and schedule."""

    KEY: ClassVar[str] = "training"
    batch_size: int = setting(32, Range(1))
    """Images per step."""
    max_epochs: int = setting(10, Range(1))
    """Passes over the training split."""
    seed: int = 42
    """Seed for weights init, shuffling and augmentation."""
    deterministic: bool = True
    """Deterministic kernels, so a rerun gives the same numbers."""
    scheduler: str = setting("cosine", OneOf("none", "cosine", "step"))
    """Learning-rate schedule."""
    warmup_epochs: int = setting(0, Range(0))
    """Epochs of linear warm-up before the schedule."""
    grad_clip: float = setting(1.0, Range(0))
    """Max gradient norm; 0 disables clipping."""


@dataclass
class OptimizerConfig(Section):
    """AdamW, as in the original project."""

    KEY: ClassVar[str] = "optimizer"
    name: str = setting("adamw", OneOf("adamw"))
    """Optimizer name; the loop implements AdamW only."""
    learning_rate: float = setting(1.0e-4, POSITIVE)
    """Peak learning rate; small because the backbone is pretrained."""
    weight_decay: float = setting(0.05, Range(0))
    """Decoupled weight decay (regularisation)."""


@dataclass
class TrainerConfig(Section):
    """Where and how precisely training runs (trainer.yaml and trainer_baseline.yaml)."""

    KEY: ClassVar[str] = "trainer"
    accelerator: str = setting("auto", OneOf("auto", "cpu", "gpu", "mps"))
    """auto picks CUDA, then MPS, then the CPU."""
    devices: Any = setting("auto", DEVICES)
    """auto, a device count (1) or a list of device ids ([0]); training uses one device."""
    precision: str = setting("32", OneOf(*PRECISIONS))
    """Lightning's precision names; the loop implements these four."""


@dataclass
class MlflowConfig:
    enabled: bool = False
    """Log params, metrics and the model to MLflow (needs mlflow installed)."""
    tracking_uri: str = "sqlite:///mlruns.db"
    """MLflow backend store: a local SQLite file or a server URL."""
    experiment_name: str = "nsfw_detection"
    """MLflow experiment the runs go to."""
    registered_model_name: str = "nsfw_detection_model"
    """Model Registry name a finished run (and `export --mlflow`) registers a version under."""
    registered_model_alias: str | None = "candidate"
    """Alias the newest registered version takes (MLflow moves it); null for none."""


@dataclass
class LoggingConfig(Section):
    """MLflow experiment tracking and the log level."""

    KEY: ClassVar[str] = "logging"
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    level: str = setting("INFO", OneOf(*LEVELS))
    """Python log level."""


@dataclass
class MetricsConfig(Section):
    """What picks the best checkpoint and the decision threshold."""

    KEY: ClassVar[str] = "metrics"
    target_recall: float = setting(0.95, Range(0, 1, low_open=True))
    """The threshold is set to reach this NSFW recall on val (misses cost most)."""
    monitor: str = setting("val_auroc", OneOf(*MONITORS))
    """Metric that selects the best checkpoint."""
    max_val_fpr: float = setting(0.2, Range(0, 1))
    """A new model whose threshold flags more validation SFW images than this is not activated."""


@dataclass
class PlotsConfig(Section):
    """Training curves and evaluation figures."""

    KEY: ClassVar[str] = "plots"
    output_dir: str = "plots"
    """Folder the figures are written to."""
    dpi: int = setting(120, Range(1))
    """Resolution of the saved figures."""


# -- the faces ---------------------------------------------------------------------------------


@dataclass
class ScanConfig(Section):
    """Scoring a folder of images (`scan`; core.scan.ScanOptions adds the decoder)."""

    KEY: ClassVar[str] = "scan"
    threshold: float | None = setting(None, FRACTION)
    """NSFW probability cut-off; None: the model's own stored threshold."""
    batch_size: int = setting(16, Range(1))
    """Images per model call."""
    workers: int = setting(2, Range(0))
    """Decode processes (0: decode in the scanning thread)."""
    queue_size: int = setting(64, Range(1))
    """Decoded images waiting for the model; bounds memory."""
    timeout_s: float = setting(20.0, POSITIVE)
    """Per-file decode limit in seconds; a slower file is skipped as a timeout."""
    pattern: str | None = None
    """Glob the file names must match (e.g. "*.jpg"); None: every image and video type."""
    recursive: bool = True
    """Descend into subfolders."""
    use_draft: bool = True
    """Let JPEG decode at reduced size (much faster for large photos)."""
    max_frames: int = setting(8, Range(1))
    """Frames sampled from an animated image (GIF, WebP, APNG)."""
    video_frames: int = setting(16, Range(1))
    """Evenly spaced frames sampled from a video (needs the video extra); the highest counts."""


@dataclass
class ExportConfig(Section):
    """A trained checkpoint to ONNX."""

    KEY: ClassVar[str] = "export"
    output: str | None = None
    """Path of the .onnx file; None: next to the checkpoint."""
    opset: int = setting(18, Range(1))
    """ONNX opset version."""
    dynamic_batch: bool = True
    """Allow any batch size at inference."""
    input_size: list[int] | None = setting(None, SIZE)
    """[height, width] of the exported input; None: data.input_size."""
    quantize: bool = False
    """Also write an int8 copy (static QDQ, calibrated on the run's validation images)."""


@dataclass
class ServeConfig(Section):
    """The local HTTP scoring endpoint."""

    KEY: ClassVar[str] = "serve"
    host: str = "127.0.0.1"
    """Address to bind; keep it local unless behind a proxy."""
    port: int = setting(5000, Range(1, 65535))
    """TCP port."""
    root: str | None = None
    """Folder that path-based requests may read from; None: paths are refused."""
    token: str | None = None
    """Bearer token required on requests; None: no auth (local use only)."""
    max_body_mb: float = setting(32.0, POSITIVE)
    """Largest accepted request body in MiB."""
    max_images: int = setting(64, Range(1))
    """Most images in one request."""


@dataclass
class WatchConfig(Section):
    """Scoring new files as they land in a folder (core.watch_options.WatchOptions adds knobs)."""

    KEY: ClassVar[str] = "watch"
    settle_s: float = setting(2.0, POSITIVE)
    """Seconds a file's size and mtime must stay unchanged before it is scored."""
    rescan_interval_s: float = setting(300.0, POSITIVE)
    """Full rescan period in seconds, to catch events the file system never delivered."""
    quarantine: str | None = None
    """Folder NSFW and unreadable files are moved to; None: only record scores."""
    dry_run: bool = False
    """Report what would be moved without moving it."""
    polling: bool = False
    """Poll the file system instead of native events (network drives, bind mounts)."""
    catch_up: bool = True
    """Score the files that arrived while the watcher was not running."""
    never_settles_timeout_s: float = setting(120.0, POSITIVE)
    """A file still changing after this long is an error (it is never read)."""
    undecodable_grace_s: float = setting(10.0, Range(0))
    """A file unchanged this long (from its mtime) that still does not decode is an error."""

    def check(self) -> None:
        super().check()
        if self.never_settles_timeout_s < self.settle_s:
            raise ConfigError(
                f"watch.never_settles_timeout_s: expected a number >= watch.settle_s "
                f"({self.settle_s:g}), got {self.never_settles_timeout_s:g}"
            )


@dataclass
class AdaptConfig(Section):
    """A small head on the built-in model's pooled features (core.adapt.Settings adds more)."""

    KEY: ClassVar[str] = "adapt"
    kind: str = setting("logreg", OneOf(*HEAD_KINDS))
    """logreg (logistic regression) or mlp (one hidden layer, ReLU)."""
    c_grid: tuple[float, ...] = setting(
        (0.001, 0.01, 0.1, 1.0, 10.0),
        Check("a list of positive numbers", lambda v: len(v) > 0 and min(v) > 0),
    )
    """Inverse L2 strengths tried; cross-validation picks one."""
    hidden: int = setting(32, Range(1))
    """Hidden units of the mlp head."""
    folds: int = setting(5, Range(2))
    """Cross-validation folds (fewer when a class has fewer labelled images)."""
    min_labels_per_class: int = setting(5, Range(2))
    """No adaptation below this many NSFW and SFW labels on scored images."""
    auto_every: int = setting(20, Range(0))
    """Review screen: adapt after this many new labels; 0: only on A."""


@dataclass
class DupesConfig(Section):
    """Near-duplicate groups: `nsfw-tui dupes`, the review screen's filter, the training split."""

    KEY: ClassVar[str] = "dupes"
    threshold: float = setting(0.94, Range(0, 1, low_open=True))
    """Cosine of the built-in model's cached features at or above which two images are one group."""
    phash_distance: int = setting(12, Range(0, 64))
    """Images without cached features: perceptual hashes at most this many bits apart (of 64)."""


# The schema of each group file, by file name; a file not named here (in a folder of one's
# own configs) takes the schema of its group, the key it is placed under.
SCHEMAS: dict[str, type[Section]] = {
    "data": DataConfig,
    "model": ConvNextConfig,
    "model_baseline": BaselineConfig,
    "model_adapt": AdaptModelConfig,
    "training": TrainingConfig,
    "optimizer": OptimizerConfig,
    "trainer": TrainerConfig,
    "trainer_baseline": TrainerConfig,
    "logging": LoggingConfig,
    "metrics": MetricsConfig,
    "plots": PlotsConfig,
    "scan": ScanConfig,
    "export": ExportConfig,
    "serve": ServeConfig,
    "watch": WatchConfig,
    "adapt": AdaptConfig,
    "dupes": DupesConfig,
}
