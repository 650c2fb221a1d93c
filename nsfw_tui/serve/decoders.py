"""What the REST face decodes: its task type and its decoder for the core decode pool."""

# Nothing here may import fastapi, starlette, anyio or uvicorn: spawned decode workers import
# this module for `decode_task`, and the base install has none of them.

from __future__ import annotations

import functools
from typing import Any

from ..core.images import Result, decode_image
from ..core.preprocess import Preprocessing
from .paths import read_confined

Task = tuple[str, str, Any]  # ("bytes", name, data) | ("path", name, (real_path, root))


def decode_task(task: Task, spec: Preprocessing, use_draft: bool, max_frames: int) -> Result:
    """``decode_image`` of a task: its bytes, or its file read confined under the root."""
    kind, name, payload = task
    source = functools.partial(read_confined, *payload) if kind == "path" else payload
    return decode_image(source, name, spec, use_draft=use_draft, max_frames=max_frames)


def task_name(task: Task) -> str:
    """The name a request's image goes by in its answer (``images[0]``, ``inputs[2]``)."""
    return task[1]
