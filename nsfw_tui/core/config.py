"""Load the YAML configs into one validated, read-only OmegaConf tree, with CLI overrides."""

# Why OmegaConf and not Hydra's compose API: OmegaConf keeps no global state (Hydra needs
# `initialize()` and a process-wide singleton), reads our YAML from package data inside an
# installed wheel, and gives typed merges and struct/read-only mode. Hydra would add that
# singleton and its own CLI, and our CLI is Typer. The `defaults:` list and the `key=value`
# override names of the original Hydra project are kept, so its commands still read the same.

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nsfw_tui.core.errors import ConfigError

__all__ = [
    "available_configs",
    "config_dir",
    "flatten",
    "load_config",
    "resolve_config_name",
    "to_container",
]

_MAIN_PREFIX = "config"
_SEGMENT = r"[A-Za-z_][A-Za-z0-9_-]*"
_KEY_RE = re.compile(rf"{_SEGMENT}(\.{_SEGMENT})*")
_FILE_RE = re.compile(_SEGMENT)

PathLike = str | os.PathLike[str]


def config_dir(directory: PathLike | None = None) -> Path:
    """The folder holding config.yaml and the group files.

    ``directory`` points at another folder (tests, a user's own configs). Without it: the
    installed wheel's ``nsfw_tui/configs`` first, then the checkout's ``configs/``.
    """
    if directory is not None:
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError(f"config directory {path} does not exist")
        return path
    here = Path(__file__).resolve()
    candidates = (here.parents[1] / "configs", here.parents[2] / "configs")
    for candidate in candidates:
        # config.yaml must be there: a stray site-packages/configs of another package is not ours
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(f"no configs found in {candidates[0]} or {candidates[1]}")


def available_configs(directory: PathLike | None = None) -> list[str]:
    """Names of the main configs (config.yaml, config_*.yaml), sorted."""
    folder = config_dir(directory)
    return sorted(
        p.stem
        for p in folder.glob("*.yaml")
        if p.stem == _MAIN_PREFIX or p.stem.startswith(f"{_MAIN_PREFIX}_")
    )


def resolve_config_name(name: str | None, *, directory: PathLike | None = None) -> str:
    """Map a ``--config-name`` value (``baseline``, ``config_baseline``, ``x.yaml``) to a stem."""
    names = available_configs(directory)
    wanted = name or _MAIN_PREFIX
    wanted = wanted.removesuffix(".yaml")
    for candidate in (wanted, f"{_MAIN_PREFIX}_{wanted}"):
        if candidate in names:
            return candidate
    shown = ", ".join(
        n if n == _MAIN_PREFIX else f"{n} ({n.removeprefix(_MAIN_PREFIX + '_')})" for n in names
    )
    raise ConfigError(f"unknown config name {name!r}; available: {shown or 'none'}")


def load_config(
    name: str | None = None,
    overrides: Sequence[str] = (),
    *,
    section: str | None = None,
    directory: PathLike | None = None,
) -> DictConfig:
    """Compose a main config and its groups, apply ``key=value`` overrides, and freeze it.

    The main file's ``defaults:`` list names group files: ``- data`` puts data.yaml under
    ``data``; ``- trainer: trainer_baseline`` puts trainer_baseline.yaml under ``trainer``.
    The main file's other keys are merged on top. With ``section`` (e.g. ``"scan"``), an
    override whose first part is not a top-level key is read relative to it
    (``threshold=0.3`` is ``scan.threshold=0.3``). ``directory`` reads configs from another
    folder (see :func:`config_dir`). The result is read-only and in struct mode, so a
    mistyped attribute raises; use :func:`to_container` for a mutable copy.
    """
    folder = config_dir(directory)
    stem = resolve_config_name(name, directory=folder)
    main_path = folder / f"{stem}.yaml"
    main = _load_yaml(main_path)

    tree: dict[str, Any] = {}
    for group, file in _defaults_list(main_path, main.pop("defaults", [])):
        group_path = folder / f"{file}.yaml"
        if not group_path.is_file():
            raise ConfigError(
                f"{main_path.name}: defaults names {file!r} but {group_path} is missing"
            )
        content = _load_yaml(group_path)
        tree[group] = _with_source(group_path.name, _check_rules, group, content, None)
    # The main file may add keys no group has (config_adapt's `model`); known keys keep types.
    _with_source(main_path.name, _merge, tree, main, "", True)

    if section is not None and not isinstance(tree.get(section), dict):
        raise ConfigError(f"config {stem!r} has no section {section!r}; sections: {_tops(tree)}")
    for text in overrides:
        _apply_override(tree, text, section)

    cfg = OmegaConf.create(tree)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """A plain, mutable dict copy of ``cfg`` with interpolations resolved."""
    data = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(data, dict):
        raise ConfigError("config is not a mapping")
    return data  # type: ignore[return-value]


def flatten(cfg: DictConfig) -> dict[str, object]:
    """Leaves of ``cfg`` under dotted keys (``training.batch_size``), e.g. for MLflow params."""
    out: dict[str, object] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(f"{prefix}{key}.", value)
            else:
                out[f"{prefix}{key}"] = value

    walk("", to_container(cfg))
    return out


# --- files ---------------------------------------------------------------------------------


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        node = OmegaConf.load(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}{problem}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return OmegaConf.to_container(node, resolve=False)  # type: ignore[return-value]


def _defaults_list(path: Path, entries: object) -> list[tuple[str, str]]:
    if not isinstance(entries, list):
        raise ConfigError(f"{path.name}: 'defaults' must be a list of group names")
    out: list[tuple[str, str]] = []
    for entry in entries:
        if entry == "_self_":  # Hydra's marker; our main keys always go on top
            continue
        pair = (entry, entry) if isinstance(entry, str) else None
        if isinstance(entry, dict) and len(entry) == 1:
            pair = next(iter(entry.items()))
        if pair is None or not all(isinstance(p, str) and _FILE_RE.fullmatch(p) for p in pair):
            raise ConfigError(f"{path.name}: defaults entry {entry!r} is not a name or group: file")
        group, file = pair
        if any(group == g for g, _ in out):
            raise ConfigError(f"{path.name}: group {group!r} appears twice in defaults")
        out.append((group, file))
    return out


def _with_source(source: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a check on a file's values; an error names the file it came from."""
    try:
        return fn(*args)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


# --- overrides -----------------------------------------------------------------------------


def _apply_override(tree: dict[str, Any], text: str, section: str | None) -> None:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY_RE.fullmatch(key):
        raise ConfigError(
            f"override {text!r} is not key=value with a dotted key like training.batch_size=64"
        )
    relative = section is not None and key.split(".")[0] not in tree
    path = f"{section}.{key}" if relative else key
    parent, leaf = _lookup(tree, path, section if relative else None)
    parent[leaf] = _coerce(path, parent[leaf], _parse_value(raw), raw, False)


def _parse_value(raw: str) -> Any:
    try:
        # The exact parsing OmegaConf.from_dotlist gives `key=value` (YAML, 1e-4 is a float).
        value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw}"]), resolve=False)["v"]
    except Exception:
        return raw  # text YAML cannot read, like *.jpg, is meant as a plain string
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        return raw  # YAML 1.1 reads yes/no/on/off as booleans; we take only true/false
    return value


def _lookup(tree: dict[str, Any], path: str, section: str | None) -> tuple[dict[str, Any], str]:
    node: Any = tree
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            siblings = sorted(node) if isinstance(node, dict) else []
            raise _unknown_key(_paths(tree), path, section, siblings)
        if depth < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


def _unknown_key(
    known: list[str], path: str, section: str | None, siblings: list[str]
) -> ConfigError:
    shown = path.removeprefix(f"{section}.") if section else path
    match = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    if match:
        # answer in the spelling the person used: relative to the section if they were
        hint = match[0].removeprefix(f"{section}.") if section else match[0]
        return ConfigError(f"unknown config key {shown!r} (did you mean {hint!r}?)")
    there = f"; known keys there: {', '.join(siblings)}" if siblings else ""
    return ConfigError(f"unknown config key {shown!r}{there}")


def _paths(node: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in node.items():
        out.append(f"{prefix}{key}")
        if isinstance(value, dict):
            out.extend(_paths(value, f"{prefix}{key}."))
    return out


def _tops(tree: dict[str, Any]) -> str:
    return ", ".join(sorted(tree))


# --- types and rules -----------------------------------------------------------------------


def _merge(base: dict[str, Any], updates: dict[str, Any], prefix: str, allow_new: bool) -> None:
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if key in base:
            base[key] = _coerce(path, base[key], value, None, allow_new)
        elif allow_new:
            base[key] = _check_rules(path, value, None)
        else:
            raise _unknown_key(_paths(base, prefix), path, None, sorted(base))


def _coerce(path: str, default: Any, value: Any, raw: str | None, allow_new: bool) -> Any:
    """Check ``value`` against the key's rule, else against the type of its default."""
    rule = _RULES.get(path)
    if rule is not None:
        return rule(path, value, raw)
    if default is None:
        return _check_rules(path, value, raw)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise _expected(path, "a mapping (set one of its keys instead)", value)
        merged = copy.deepcopy(default)
        _merge(merged, value, f"{path}.", allow_new)
        return merged
    if isinstance(default, list):
        return _coerce_list(path, default, value)
    return _coerce_scalar(path, default, value, raw)


_KIND_NAMES: dict[type, tuple[str, str]] = {
    bool: ("true or false", "true/false values"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}


def _kind(value: Any) -> type | None:
    for kind in (bool, int, float, str):  # bool before int: True is an int in Python
        if isinstance(value, kind):
            return kind
    return None


def _fits(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return _is_int(value)
    if kind is float:
        return _is_number(value)
    return value is not None and not isinstance(value, (list, dict))


def _convert(kind: type, value: Any, raw: str | None) -> Any:
    if kind is float:
        return float(value)
    if kind is str and not isinstance(value, str):
        return raw.strip() if raw is not None else _show(value)  # keeps `token=0123` as typed
    return value


def _coerce_scalar(path: str, default: Any, value: Any, raw: str | None) -> Any:
    kind = _kind(default)
    if kind is None:
        return value
    if not _fits(kind, value):
        raise _expected(path, _KIND_NAMES[kind][0], value)
    return _convert(kind, value, raw)


def _coerce_list(path: str, default: list[Any], value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _expected(path, "a list", value)
    kinds = {_kind(item) for item in default}
    if len(kinds) != 1 or None in kinds:
        return value  # an empty or mixed default says nothing about the items
    (kind,) = kinds
    if not all(_fits(kind, item) for item in value):
        raise _expected(path, f"a list of {_KIND_NAMES[kind][1]}", value)
    return [_convert(kind, item, None) for item in value]


def _check_rules(path: str, value: Any, raw: str | None) -> Any:
    """Apply range rules inside a subtree that has no typed default (a new or null key)."""
    rule = _RULES.get(path)
    if rule is not None:
        return rule(path, value, raw)
    if isinstance(value, dict):
        return {key: _check_rules(f"{path}.{key}", item, None) for key, item in value.items()}
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value as it would be typed on the command line, on one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _expected(path: str, what: str, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {what}, got {_show(value)}")


Rule = Callable[[str, Any, str | None], Any]


def _number(
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    open_low: bool = False,
    nullable: bool = False,
) -> Rule:
    what = "an integer" if integer else "a number"
    if low is not None and high is not None:
        bounds = f"in [{low}, {high}]"
    elif low is not None:
        bounds = f"> {low}" if open_low else f">= {low}"
    else:
        bounds = ""

    def check(path: str, value: Any, raw: str | None) -> Any:
        if value is None and nullable:
            return None
        if not (_is_int(value) if integer else _is_number(value)):
            raise _expected(path, what, value)
        too_low = low is not None and (value <= low if open_low else value < low)
        if too_low or (high is not None and value > high):
            raise _expected(path, f"{what} {bounds}", value)
        return value if integer else float(value)

    return check


def _choice(*options: object) -> Rule:
    shown = ", ".join(str(option) for option in options)

    def check(path: str, value: Any, raw: str | None) -> Any:
        # `value in options` would let True match 1; compare type and value
        if not any(type(value) is type(option) and value == option for option in options):
            raise _expected(path, f"one of {shown}", value)
        return value

    return check


def _text(path: str, value: Any, raw: str | None) -> Any:
    """A path, glob or token: null, or any scalar taken as text."""
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        raise _expected(path, "a string or null", value)
    return _convert(str, value, raw)


def _devices(path: str, value: Any, raw: str | None) -> Any:
    if value == "auto" or (_is_int(value) and value >= 1):
        return value
    if isinstance(value, list) and value and all(_is_int(v) and v >= 0 for v in value):
        return value
    raise _expected(path, "auto, a positive integer or a list of device ids like [0]", value)


def _size_or_null(path: str, value: Any, raw: str | None) -> Any:
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v >= 1 for v in value):
        return value
    raise _expected(path, "[height, width] in pixels or null", value)


# Keys whose allowed values are narrower than their default's type. A rule replaces the type
# check for its key, and also runs on the values read from the files.
_RULES: dict[str, Rule] = {
    "data.split.val_fraction": _number(0, 1),
    "data.folder": _text,
    "model.weights": _text,
    "training.batch_size": _number(1, integer=True),
    "training.max_epochs": _number(1, integer=True),
    "training.warmup_epochs": _number(0, integer=True),
    "training.grad_clip": _number(0),
    "training.scheduler": _choice("none", "cosine", "step"),
    "optimizer.learning_rate": _number(0, open_low=True),
    "optimizer.weight_decay": _number(0),
    "trainer.accelerator": _choice("auto", "cpu", "gpu", "mps"),
    "trainer.devices": _devices,
    "trainer.precision": _choice(
        16, 32, 64, "16-mixed", "bf16-mixed", "16-true", "bf16-true", "32-true", "64-true"
    ),
    "logging.level": _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "metrics.target_recall": _number(0, 1),
    "metrics.monitor": _choice(
        "val_loss", "val_auroc", "val_accuracy", "val_recall", "val_precision"
    ),
    "model.freeze_stages": _number(0, integer=True),
    "data.num_workers": _number(0, integer=True),
    "adapt.kind": _choice("logreg", "mlp"),
    "adapt.hidden": _number(1, integer=True),
    "adapt.folds": _number(2, integer=True),
    "adapt.min_labels_per_class": _number(2, integer=True),
    "adapt.auto_every": _number(0, integer=True),
    "scan.threshold": _number(0, 1, nullable=True),
    "scan.batch_size": _number(1, integer=True),
    "scan.workers": _number(0, integer=True),
    "scan.queue_size": _number(1, integer=True),
    "scan.timeout_s": _number(0, open_low=True),
    "scan.pattern": _text,
    "scan.max_frames": _number(1, integer=True),
    "export.output": _text,
    "export.input_size": _size_or_null,
    "serve.port": _number(1, 65535, integer=True),
    "serve.root": _text,
    "serve.token": _text,
    "watch.quarantine": _text,
    "watch.settle_s": _number(0),
}
