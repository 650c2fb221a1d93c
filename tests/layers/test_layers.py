"""Layering: import-linter's contracts hold and catch breaks; no import loops; lazy heavy imports.

Which package may import which (and that core and the models package import no torch and no
UI) is stated once, as contracts in pyproject.toml, and checked here and in CI by import-linter.
What it cannot see is checked here by hand: that heavy libraries are imported only inside the
functions that need them, and that no module imports another in a loop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
# `lint-imports` through this interpreter, wherever its scripts are installed
LINT = [sys.executable, "-c", "import importlinter.cli as c; c.lint_imports_command()"]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the packages under ``root``, with the contracts of its pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [*LINT, "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True, text=True
    )


def test_the_layering_contracts_hold():
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("nsfw_tui/core/metrics.py", "import textual", "Core imports nothing else"),
        ("nsfw_tui/core/metrics.py", "from nsfw_tui.models import registry", "Layers"),
        ("nsfw_tui/models/onnx_files.py", "import torch", "The models package imports no torch"),
        ("nsfw_tui/models/registry.py", "from trainer import checkpoint", "Layers"),
        ("trainer/fit.py", "from nsfw_tui.tui import app", "Layers"),
        ("trainer/fit.py", "import textual", "The trainer imports no UI"),
        ("nsfw_tui/serve/decoders.py", "import starlette", "The decode path imports no web"),
    ],
)
def test_the_contracts_catch_a_forbidden_import(tmp_path, module, line, broken):
    for name in ("nsfw_tui", "trainer"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with open(tmp_path / module, "a", encoding="utf-8") as fh:
        fh.write(f"\n{line}\n")
    out = lint_imports(tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert any(broken in row and "BROKEN" in row for row in out.stdout.splitlines()), out.stdout


def test_no_module_imports_another_in_a_loop():
    """Function-level and TYPE_CHECKING imports count: each is a loop waiting to happen."""
    graph = grimp.build_graph("nsfw_tui", "trainer", cache_dir=None)
    in_loops = {
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    }
    assert not in_loops, f"import loops: {sorted(in_loops)}"


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


def test_cli_help_loads_no_heavy_library():
    loaded = loaded_after("import nsfw_tui.cli")
    assert not loaded & {"torch", "timm", "onnxruntime", "onnx", "textual", "matplotlib"}


def test_the_models_package_loads_torch_only_for_a_checkpoint():
    """import-linter allows the one lazy edge; it must stay lazy (inside the function)."""
    loaded = loaded_after(
        "import nsfw_tui.models.registry, nsfw_tui.models.torch_edge, "
        "nsfw_tui.models.onnx_import, nsfw_tui.models.adapted_onnx"
    )
    assert not loaded & {"torch", "timm", "torchvision", "trainer", "textual"}


def test_a_decode_worker_loads_no_web_library():
    """Spawned workers import the REST face's decoder module, which imports its package: the
    package's own modules import the web stack only inside functions."""
    loaded = loaded_after(
        "import nsfw_tui.core.decode_pool, nsfw_tui.serve.decoders, nsfw_tui.serve.app"
    )
    assert "nsfw_tui" in loaded
    assert not loaded & {"fastapi", "starlette", "anyio", "uvicorn", "httpx", "sniffio"}
