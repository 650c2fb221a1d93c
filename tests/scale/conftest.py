"""One local Ray (2 CPUs, a small object store) shared by a test module, always shut down."""

from __future__ import annotations

import os

import pytest
from support.scale import RAY_ARGS

from nsfw_tui.core.scorers import BUILTIN_ID
from nsfw_tui.core.store import ModelRow


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, **RAY_ARGS)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def builtin_row() -> ModelRow:
    return ModelRow(BUILTIN_ID, "builtin", None, 0.2, {}, None, {}, 0.0, True)
