"""Fixtures shared across the test folders: a home folder and a store inside it.

Support code lives in tests/support/ (importable as `support` through pytest's `pythonpath`);
test files never import each other. Folder-specific fixtures sit in that folder's conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nsfw_tui.core.store import Store


@pytest.fixture
def home(tmp_path) -> Path:
    """``tmp_path/home``, not created yet: the commands and ``Store.open`` make it."""
    return tmp_path / "home"


@pytest.fixture
def store(home) -> Iterator[Store]:
    """An open store at ``home/store.db``, closed after the test."""
    with Store.open(home / "store.db") as s:
        yield s
