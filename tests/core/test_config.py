"""Tests for the config loader: composition, config names, overrides, validation, packaging."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nsfw_tui.core.config import (
    available_configs,
    config_dir,
    flatten,
    load_config,
    resolve_config_name,
    to_container,
)
from nsfw_tui.core.config_schema import SCHEMAS, ScanConfig, TrainerConfig, WatchConfig
from nsfw_tui.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
GROUPS = [
    "data",
    "model",
    "training",
    "optimizer",
    "trainer",
    "logging",
    "metrics",
    "scan",
    "plots",
    "export",
    "serve",
    "watch",
    "dupes",
]


def write_configs(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# --- composition ---------------------------------------------------------------------------


def test_checkout_configs_are_found():
    assert config_dir() == REPO / "configs"
    assert available_configs() == ["config", "config_adapt", "config_baseline"]


def test_main_config_composes_every_group():
    cfg = load_config()
    assert list(cfg) == GROUPS
    assert cfg.model.name == "convnext_tiny"
    assert cfg.model.pretrained is True
    assert cfg.data.input_size == [200, 200]
    assert cfg.data.augment.gaussian_blur.sigma == [0.1, 1.5]
    assert cfg.optimizer.learning_rate == pytest.approx(1e-4)
    assert cfg.metrics.monitor == "val_auroc"
    assert cfg.trainer.accelerator == "auto"
    assert cfg.scan.threshold is None
    assert cfg.logging.mlflow.tracking_uri == "sqlite:///mlruns.db"


def test_baseline_picks_baseline_model_and_trainer():
    cfg = load_config("baseline")
    assert list(cfg) == GROUPS
    assert cfg.model.name == "baseline_cnn"
    assert cfg.model.channels == [32, 64]
    assert "pretrained" not in cfg.model
    assert set(cfg.trainer) == {"accelerator", "devices", "precision"}
    # the main file's own keys land on top of the groups
    assert cfg.optimizer.learning_rate == pytest.approx(1e-3)
    assert cfg.metrics.monitor == "val_accuracy"
    assert cfg.data == load_config().data


def test_adapt_config_is_small_and_names_adapt():
    cfg = load_config("adapt")
    assert cfg.model.name == "adapt"
    assert "trainer" not in cfg


@pytest.mark.parametrize("name", ["config", "config_adapt", "config_baseline"])
def test_main_configs_have_no_missing_values(name):
    assert OmegaConf.missing_keys(load_config(name)) == set()


@pytest.mark.parametrize(
    ("given", "stem"),
    [
        (None, "config"),
        ("config", "config"),
        ("config.yaml", "config"),
        ("baseline", "config_baseline"),
        ("config_baseline", "config_baseline"),
        ("config_baseline.yaml", "config_baseline"),
        ("adapt", "config_adapt"),
        ("config_adapt", "config_adapt"),
    ],
)
def test_config_name_spellings(given, stem):
    assert resolve_config_name(given) == stem


def test_both_baseline_spellings_load_the_same_config():
    assert load_config("baseline") == load_config("config_baseline")


def test_unknown_config_name_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"unknown config name 'resnet'.*config_baseline"):
        resolve_config_name("resnet")


def test_every_leaf_key_in_the_files_has_a_comment():
    leaf = re.compile(r"^\s*[A-Za-z_][\w-]*:\s*[^\s#]")
    missing = [
        f"{path.name}:{number}"
        for path in sorted((REPO / "configs").glob("*.yaml"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if leaf.match(line) and "#" not in line
    ]
    assert missing == []


# --- overrides -----------------------------------------------------------------------------


def test_original_override_names():
    cfg = load_config(
        None,
        [
            "training.batch_size=64",
            "training.max_epochs=20",
            "optimizer.learning_rate=1e-3",
            "trainer.accelerator=gpu",
            "trainer.devices=[0]",
            "model.pretrained=false",
        ],
    )
    assert cfg.training.batch_size == 64
    assert cfg.training.max_epochs == 20
    assert cfg.optimizer.learning_rate == pytest.approx(1e-3)
    assert isinstance(cfg.optimizer.learning_rate, float)
    assert cfg.trainer.accelerator == "gpu"
    assert list(cfg.trainer.devices) == [0]
    assert cfg.model.pretrained is False


def test_override_values_parse_as_yaml():
    cfg = load_config(
        None,
        [
            "trainer.devices=1",
            "trainer.precision=bf16-mixed",
            "optimizer.learning_rate=1",  # an int where a float is expected becomes a float
            "scan.pattern=*.jpg",  # not valid YAML (an alias), taken as text
            "serve.token=0123",  # text keys keep what was typed
            "data.augment.random_resized_crop.scale=[0.5, 1]",
        ],
    )
    assert cfg.trainer.devices == 1
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.optimizer.learning_rate == 1.0
    assert isinstance(cfg.optimizer.learning_rate, float)
    assert cfg.scan.pattern == "*.jpg"
    assert cfg.serve.token == "0123"
    assert cfg.data.augment.random_resized_crop.scale == [0.5, 1.0]


def test_section_relative_overrides():
    cfg = load_config(None, ["threshold=0.3", "workers=0", "training.batch_size=8"], section="scan")
    assert cfg.scan.threshold == pytest.approx(0.3)
    assert cfg.scan.workers == 0
    assert cfg.training.batch_size == 8  # a top-level group name keeps the key absolute
    assert load_config(None, ["scan.threshold=0.4"], section="scan").scan.threshold == 0.4


def test_unknown_section():
    with pytest.raises(ConfigError, match="has no section 'scann'"):
        load_config(None, ["threshold=0.3"], section="scann")


@pytest.mark.parametrize("section", [None, "scan"])
def test_mistyped_section_suggests_the_close_one(section):
    with pytest.raises(ConfigError) as info:
        load_config(None, ["traning.batch_size=64"], section=section)
    assert str(info.value) == (
        "unknown config key 'traning.batch_size' (did you mean 'training.batch_size'?)"
    )


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["training.batchsize=64"])
    assert str(info.value) == (
        "unknown config key 'training.batchsize' (did you mean 'training.batch_size'?)"
    )


def test_unknown_relative_key_suggests_in_the_same_spelling():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["treshold=0.3"], section="scan")
    assert str(info.value) == "unknown config key 'treshold' (did you mean 'threshold'?)"


def test_key_of_the_other_model_is_unknown():
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.pretrained'"):
        load_config("baseline", ["model.pretrained=false"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("scan.threshold=abc", "scan.threshold: expected a number, got 'abc'"),
        ("scan.threshold=1.5", "scan.threshold: expected a number in [0, 1], got 1.5"),
        ("training.max_epochs=-1", "training.max_epochs: expected an integer >= 1, got -1"),
        ("training.batch_size=1.5", "training.batch_size: expected an integer, got 1.5"),
        (
            "trainer.accelerator=tpu",
            "trainer.accelerator: expected one of auto, cpu, gpu, mps, got 'tpu'",
        ),
        ("model.pretrained=yes", "model.pretrained: expected true or false, got 'yes'"),
        ("model.dropout=[0.1]", "model.dropout: expected a number, got [0.1]"),
        ("optimizer.learning_rate=0", "optimizer.learning_rate: expected a number > 0, got 0"),
        ("serve.port=70000", "serve.port: expected an integer in [1, 65535], got 70000"),
        ("training.scheduler=linear", "training.scheduler: expected one of none, cosine, step"),
        ("trainer.devices=[-1]", "trainer.devices: expected auto, a positive integer"),
        ("data.input_size=[200, a]", "data.input_size: expected a list of integers"),
        ("logging.level=[INFO]", "logging.level: expected one of DEBUG"),
        ("data.augment=1", "data.augment: expected a mapping"),
        (
            "trainer.precision=16-true",  # Lightning has it; the training loop does not
            "trainer.precision: expected one of 32, 32-true, 16-mixed, bf16-mixed, got '16-true'",
        ),
        ("metrics.target_recall=0", "metrics.target_recall: expected a number in (0, 1], got 0"),
        ("model.dropout=1", "model.dropout: expected a number in [0, 1), got 1"),
        ("watch.settle_s=0", "watch.settle_s: expected a number > 0, got 0"),
        ("optimizer.name=sgd", "optimizer.name: expected one of adamw, got 'sgd'"),
    ],
)
def test_wrong_values_name_key_expectation_and_value(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override", ["training.batch_size", "=3", "training..batch_size=1", "+training.foo=1"]
)
def test_malformed_override(override):
    with pytest.raises(ConfigError, match="is not key=value"):
        load_config(None, [override])


def test_result_is_read_only_and_strict():
    cfg = load_config()
    with pytest.raises(Exception, match="read-only"):
        cfg.training.batch_size = 1
    with pytest.raises(AttributeError):
        _ = cfg.training.batchsize


# --- the schema ----------------------------------------------------------------------------

MAIN_CONFIGS = available_configs()
GROUP_FILES = sorted(
    path for path in (REPO / "configs").glob("*.yaml") if path.stem not in MAIN_CONFIGS
)


def test_every_group_file_has_a_schema_and_every_schema_a_file():
    assert [path.stem for path in GROUP_FILES] == sorted(SCHEMAS)


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda path: path.name)
def test_group_file_writes_out_the_schema_defaults(path):
    schema = OmegaConf.structured(SCHEMAS[path.stem])
    written = OmegaConf.load(path)
    assert set(flatten(written)) == set(flatten(schema))  # every setting there, and no other
    merged = OmegaConf.merge(schema, written)  # the file's values read as the schema's types
    assert to_container(merged) == to_container(schema)
    OmegaConf.to_object(merged)  # and the defaults pass their own rules


def test_sections_are_the_schema_dataclasses():
    cfg = load_config()
    for group in GROUPS:
        assert OmegaConf.get_type(cfg[group]) is SCHEMAS[group]
    assert OmegaConf.get_type(load_config("baseline").model) is SCHEMAS["model_baseline"]


def test_typed_objects_come_from_the_schema():
    cfg = load_config(None, ["threshold=0.3", "workers=0", "pattern=*.png"], section="scan")
    scan = ScanConfig.from_config(cfg.scan)
    assert scan == ScanConfig(threshold=0.3, workers=0, pattern="*.png")
    assert isinstance(scan.timeout_s, float)
    trainer = TrainerConfig.from_config(load_config(None, ["trainer.devices=[1]"]).trainer)
    assert trainer.devices == [1] and type(trainer.devices) is list


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ScanConfig(batch_size=0), "scan.batch_size: expected an integer >= 1, got 0"),
        (lambda: WatchConfig(settle_s=0), "watch.settle_s: expected a number > 0, got 0"),
        (
            lambda: WatchConfig(settle_s=5, never_settles_timeout_s=3),
            "watch.never_settles_timeout_s: expected a number >= watch.settle_s (5), got 3",
        ),
        (lambda: TrainerConfig(precision="64"), "trainer.precision: expected one of 32"),
    ],
)
def test_objects_built_in_code_meet_the_same_rules(build, message):
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value).startswith(message)


def test_rules_that_span_fields_run_when_the_object_is_built():
    cfg = load_config(None, ["settle_s=200"], section="watch")  # each value is fine alone
    with pytest.raises(ConfigError, match="never_settles_timeout_s: expected a number >= watch"):
        WatchConfig.from_config(cfg.watch)


# --- files in another directory ------------------------------------------------------------


def test_directory_parameter_reads_other_configs(tmp_path):
    folder = write_configs(
        tmp_path / "cfg",
        {
            "config.yaml": (
                "defaults:\n  - scan\n  - plots: plots_mine\nscan:\n  recursive: false\n"
            ),
            "scan.yaml": "threshold: 0.4\nworkers: 2\n",
            "plots_mine.yaml": "dpi: 300\n",  # a file of one's own takes its group's schema
        },
    )
    cfg = load_config(None, ["workers=4"], section="scan", directory=folder)
    assert list(cfg) == ["scan", "plots"]
    assert (cfg.scan.threshold, cfg.scan.workers, cfg.scan.recursive) == (0.4, 4, False)
    # what the files leave out keeps the schema's default
    assert (cfg.scan.batch_size, cfg.plots.dpi, cfg.plots.output_dir) == (16, 300, "plots")
    assert config_dir(folder) == folder


def test_a_key_no_schema_has_is_refused(tmp_path):
    folder = write_configs(
        tmp_path, {"config.yaml": "defaults:\n  - scan\ntitle: mine\n", "scan.yaml": "workers: 2\n"}
    )
    with pytest.raises(ConfigError) as info:
        load_config(directory=folder)
    assert str(info.value) == "config.yaml: unknown config key 'title'; known keys there: scan"


def test_a_group_without_a_schema_is_refused(tmp_path):
    folder = write_configs(
        tmp_path, {"config.yaml": "defaults:\n  - extras\n", "extras.yaml": "x: 1\n"}
    )
    with pytest.raises(ConfigError, match=r"^config\.yaml: no schema for the group 'extras'"):
        load_config(directory=folder)


def test_missing_directory():
    with pytest.raises(ConfigError, match="does not exist"):
        config_dir("/nonexistent/configs")


def test_broken_group_file_names_file_and_line(tmp_path):
    folder = write_configs(
        tmp_path,
        {
            "config.yaml": "defaults:\n  - data\n",
            "data.yaml": "split:\n  seed: 1\ninput_size: [200, 200\nnum_workers: 0\n",
        },
    )
    with pytest.raises(ConfigError) as info:
        load_config(directory=folder)
    text = str(info.value)
    assert "data.yaml" in text
    assert "line 4" in text  # YAML notices the unclosed list where the next key starts
    assert "\n" not in text


def test_broken_main_file(tmp_path):
    folder = write_configs(tmp_path, {"config.yaml": "defaults:\n  - data\n bad: [\n"})
    with pytest.raises(ConfigError, match=r"config\.yaml: line \d+"):
        load_config(directory=folder)


def test_a_key_given_twice_in_a_file_is_refused(tmp_path):
    folder = write_configs(
        tmp_path, {"config.yaml": "defaults:\n  - plots\n", "plots.yaml": "dpi: 1\ndpi: 2\n"}
    )
    with pytest.raises(ConfigError, match=r"plots\.yaml: line 2: the key 'dpi' appears twice"):
        load_config(directory=folder)


def test_missing_group_file(tmp_path):
    folder = write_configs(tmp_path, {"config.yaml": "defaults:\n  - data\n"})
    with pytest.raises(ConfigError, match=r"config\.yaml: defaults names 'data'"):
        load_config(directory=folder)


def test_bad_value_in_a_file_names_the_file(tmp_path):
    folder = write_configs(
        tmp_path, {"config.yaml": "defaults:\n  - scan\n", "scan.yaml": "threshold: 2\n"}
    )
    with pytest.raises(ConfigError) as info:
        load_config(directory=folder)
    assert str(info.value) == "scan.yaml: scan.threshold: expected a number in [0, 1], got 2"


def test_main_file_keys_keep_the_group_types(tmp_path):
    folder = write_configs(
        tmp_path,
        {
            "config.yaml": "defaults:\n  - plots\nplots:\n  dpi: high\n",
            "plots.yaml": "dpi: 120\n",
        },
    )
    with pytest.raises(ConfigError, match=r"config\.yaml: plots\.dpi: expected an integer"):
        load_config(directory=folder)


def test_top_level_list_is_refused(tmp_path):
    folder = write_configs(tmp_path, {"config.yaml": "- data\n"})
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(directory=folder)


# --- plain views ---------------------------------------------------------------------------


def test_flatten_gives_dotted_leaves():
    flat = flatten(load_config(None, ["training.batch_size=64"]))
    assert flat["training.batch_size"] == 64
    assert flat["data.split.val_fraction"] == pytest.approx(0.2)
    assert flat["data.augment.color_jitter.hue"] == pytest.approx(0.02)
    assert flat["data.input_size"] == [200, 200]
    assert flat["scan.threshold"] is None
    assert not any(isinstance(value, dict) for value in flat.values())


def test_to_container_is_a_mutable_plain_dict():
    data = to_container(load_config())
    assert type(data) is dict
    assert type(data["data"]["input_size"]) is list
    data["training"]["batch_size"] = 1  # a copy: the loaded config stays frozen


# --- packaging -----------------------------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("hatchling") is None,
    reason="hatchling is not installed, so the wheel cannot be built offline",
)
def test_configs_are_found_from_an_installed_wheel(tmp_path):
    # Build from a copy of what the wheel packs, so the test does not depend on files the
    # wheel does not contain (a README still being written) or leave output in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("configs", "nsfw_tui", "trainer"):
        if (REPO / folder).is_dir():
            shutil.copytree(REPO / folder, src / folder, ignore=ignore)
        else:
            (src / folder).mkdir()
    readme = REPO / "README.md"
    (src / "README.md").write_text(readme.read_text() if readme.is_file() else "nsfw-tui\n")

    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "--quiet", "-w", str(dist), str(src)], check=True)
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "nsfw_tui/configs/config.yaml" in names
        assert "nsfw_tui/configs/config_baseline.yaml" in names
        site = tmp_path / "site"
        archive.extractall(site)

    # Run from the unpacked wheel, away from the checkout, as an installed copy would run.
    probe = (
        "from nsfw_tui.core.config import config_dir, load_config;"
        "print(config_dir()); print(load_config('baseline').model.name)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert Path(out[0]) == site / "nsfw_tui" / "configs"
    assert out[1] == "baseline_cnn"
