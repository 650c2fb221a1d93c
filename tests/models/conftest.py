"""Fixtures of the model tests: cached hand-made scores, and a trained, exported baseline."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.scores import scored_store

from nsfw_tui.core.store import Store


@pytest.fixture
def scored_home(home) -> Path:
    """A home whose store holds the hand-made scores of support.scores, labelled."""
    return scored_store(home)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained baseline exported through the CLI with --quantize, once per test module.

    Returns (tmp, home, run result, the export command's output, the store's models by id).
    """
    from support.export import cli, trained_home

    tmp = tmp_path_factory.mktemp("exported")
    home, result = trained_home(tmp)
    out = cli("export", "--onnx", "--quantize", home=home)
    assert out.exit_code == 0, out.output
    with Store.open(home / "store.db") as store:
        rows = {m.id: m for m in store.models()}
    return tmp, home, result, out.output, rows
