"""Load the YAML configs through their schema into one read-only OmegaConf tree, with overrides."""

# Why OmegaConf and not Hydra's compose API: OmegaConf keeps no global state (Hydra needs
# `initialize()` and a process-wide singleton), reads our YAML from package data inside an
# installed wheel, and gives typed merges and struct/read-only mode. Hydra would add that
# singleton and its own CLI, and our CLI is Typer. The `defaults:` list and the `key=value`
# override names of the original Hydra project are kept, so its commands still read the same.
# Each section is a structured config made from its dataclass in core/config_schema.py: the
# types, the keys and "did you mean" are OmegaConf's; the walk below only sets values one at a
# time, so that every error names the key (and the file) in one line, and applies the rules.

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, TupleConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from nsfw_tui.core.config_rules import base_type, check_value, field_info, show, type_text
from nsfw_tui.core.config_schema import SCHEMAS
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
# OmegaConf's suggestion for a mistyped key ("Did you mean: 'batch_size'?", or "one of: ...")
_SUGGESTION_RE = re.compile(r"Did you mean(?: one of)?: '([^']+)'")

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
    Each group starts from its schema (``SCHEMAS``, by file name, else by group) and the
    file's values are set on it; then the main file's other keys, then the overrides. With
    ``section`` (e.g. ``"scan"``), an override whose first part is not a top-level key is read
    relative to it (``threshold=0.3`` is ``scan.threshold=0.3``). ``directory`` reads configs
    from another folder (see :func:`config_dir`). The result is read-only and in struct mode,
    so a mistyped attribute raises; ``ScanOptions.from_config(cfg.scan)`` and the like give
    typed objects, :func:`to_container` a mutable copy.
    """
    folder = config_dir(directory)
    stem = resolve_config_name(name, directory=folder)
    main_path = folder / f"{stem}.yaml"
    main = _load_yaml(main_path)

    paths: dict[str, Path] = {}
    schemas: dict[str, type] = {}
    for group, file in _defaults_list(main_path, main.pop("defaults", [])):
        paths[group] = folder / f"{file}.yaml"
        if not paths[group].is_file():
            raise ConfigError(
                f"{main_path.name}: defaults names {file!r} but {paths[group]} is missing"
            )
        schema = SCHEMAS.get(file) or SCHEMAS.get(group)
        if schema is None:
            known = sorted({cls.KEY for cls in SCHEMAS.values()})
            raise ConfigError(
                f"{main_path.name}: no schema for the group {group!r}; groups: {', '.join(known)}"
            )
        schemas[group] = schema
    cfg = OmegaConf.create(schemas)  # each group its schema's defaults, as a structured config
    for group, path in paths.items():
        _with_source(path.name, _merge, cfg[group], _load_yaml(path), f"{group}.")
    OmegaConf.set_struct(cfg, True)  # from here on, a key no group has is a mistake
    _with_source(main_path.name, _merge, cfg, main, "")

    if section is not None and not isinstance(cfg.get(section), DictConfig):
        raise ConfigError(f"config {stem!r} has no section {section!r}; sections: {_tops(cfg)}")
    for text in overrides:
        _apply_override(cfg, text, section)
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


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's where built) that refuses a key given twice in a mapping.

    Plain data is all the loader needs: OmegaConf.load would build a DictConfig of each file
    only for it to be read back, which took a third of the time of a whole load.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key.value!r} appears twice", key.start_mark
                    )
                seen.add(key.value)
        return super().construct_mapping(node, deep)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}{problem}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if data is None:
        return {}  # an empty file sets nothing
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return data


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


# --- setting values ------------------------------------------------------------------------


def _merge(
    node: DictConfig, values: dict[str, Any], prefix: str, section: str | None = None
) -> None:
    """Set each leaf of ``values`` on ``node`` (whose keys are under ``prefix``)."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in node:
            raise _unknown_key(node, str(key), path, section)
        _set(node, key, path, value, None, section)


def _set(
    node: DictConfig, key: str, path: str, value: Any, raw: str | None, section: str | None
) -> None:
    """Set ``node[key]`` to ``value`` through its schema type, then check the field's rule."""
    child = node[key]
    if isinstance(child, DictConfig):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{path}: expected a mapping (set one of its keys instead), got {show(value)}"
            )
        _merge(child, value, f"{path}.", section)
        return
    if _same(child, value):
        return  # most files restate the default, which already passed its rule
    hint, rule = field_info(OmegaConf.get_type(node), key)
    kind = base_type(hint)
    if kind is str and raw is not None and not isinstance(value, str | list | dict | None):
        value = raw.strip()  # text keys keep what was typed: token=0123 is not the number 83
    # OmegaConf would read "yes", "on" or 1 as true; a setting that is true or false says so.
    wrong_bool = kind is bool and not isinstance(value, bool) and value is not None
    try:
        if wrong_bool:
            raise ValueError
        OmegaConf.update(node, key, value, merge=False)
    except (OmegaConfBaseException, ValueError):
        raise ConfigError(f"{path}: expected {type_text(hint, rule)}, got {show(value)}") from None
    stored = node[key]
    if OmegaConf.is_config(stored):
        stored = OmegaConf.to_container(stored)
    check_value(path, hint, rule, stored, shown=value)


def _same(stored: Any, value: Any) -> bool:
    if isinstance(stored, ListConfig | TupleConfig):
        return (
            isinstance(value, list) and len(value) == len(stored) and all(map(_same, stored, value))
        )
    return type(stored) is type(value) and stored == value


def _apply_override(cfg: DictConfig, text: str, section: str | None) -> None:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY_RE.fullmatch(key):
        raise ConfigError(
            f"override {text!r} is not key=value with a dotted key like training.batch_size=64"
        )
    first = key.split(".")[0]
    relative = section is not None and first not in cfg
    if relative and "." in key and first not in cfg[section] and _suggestion(cfg, first):
        relative = False  # `traning.batch_size` is a mistyped section, not a key of this one
    path = f"{section}.{key}" if relative else key
    shown_section = section if relative else None
    node: Any = cfg
    *parents, leaf = path.split(".")
    for depth, part in enumerate(parents):
        if part not in node or not isinstance(node[part], DictConfig):
            done = ".".join(parents[: depth + 1])
            raise _unknown_key(node, part, done, shown_section, path.removeprefix(done))
        node = node[part]
    if leaf not in node:
        raise _unknown_key(node, leaf, path, shown_section)
    _set(node, leaf, path, _parse_value(raw), raw, shown_section)


def _parse_value(raw: str) -> Any:
    try:
        # The exact parsing OmegaConf.from_dotlist gives `key=value` (YAML, 1e-4 is a float).
        value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw}"]), resolve=False)["v"]
    except Exception:
        return raw  # text YAML cannot read, like *.jpg, is meant as a plain string
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        return raw  # YAML 1.1 reads yes/no/on/off as booleans; we take only true/false
    return value


def _suggestion(node: DictConfig, key: str) -> str | None:
    """OmegaConf's guess at the key meant instead of ``key``, if it has one."""
    try:
        node[key]
    except (ConfigAttributeError, ConfigKeyError) as exc:
        match = _SUGGESTION_RE.search(str(exc))
        return match[1] if match else None
    return None


def _unknown_key(
    node: DictConfig, key: str, path: str, section: str | None, rest: str = ""
) -> ConfigError:
    """The error for a key the schema lacks, with OmegaConf's suggestion, spelled as given.

    ``path`` ends in ``key``, the part ``node`` lacks; ``rest`` is what followed it.
    """

    def spelled(full: str) -> str:
        return full.removeprefix(f"{section}.") if section else full

    suggestion = _suggestion(node, key)
    if suggestion is not None:
        parent = path.rpartition(".")[0]
        hint = f"{parent}.{suggestion}" if parent else suggestion
        return ConfigError(
            f"unknown config key {spelled(path + rest)!r} (did you mean {spelled(hint + rest)!r}?)"
        )
    there = f"; known keys there: {', '.join(str(k) for k in node)}" if len(node) else ""
    return ConfigError(f"unknown config key {spelled(path + rest)!r}{there}")


def _tops(cfg: DictConfig) -> str:
    return ", ".join(sorted(str(k) for k in cfg))
