"""Layering: the domain imports no UI, the trainer imports no UI, the CLI loads nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


CORE = [
    "nsfw_tui.core.config",
    "nsfw_tui.core.scan",
    "nsfw_tui.core.store",
    "nsfw_tui.core.review",
    "nsfw_tui.core.evaluate",
    "nsfw_tui.core.labels",
    "nsfw_tui.core.report",
]


@pytest.mark.parametrize("module", CORE)
def test_core_imports_neither_ui_nor_trainer(module):
    loaded = loaded_after(f"import {module}")
    assert not loaded & {"textual", "textual_image", "trainer", "torch", "timm"}


def test_trainer_imports_no_ui():
    loaded = loaded_after("import nsfw_tui.models.registry, trainer.run")
    assert "textual" not in loaded and "textual_image" not in loaded


def test_cli_help_loads_no_heavy_library():
    loaded = loaded_after("import nsfw_tui.cli")
    assert not loaded & {"torch", "timm", "onnxruntime", "onnx", "textual", "matplotlib"}
