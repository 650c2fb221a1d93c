"""The REST face: a local scoring endpoint (POST /invocations, GET /health) on FastAPI + uvicorn."""

# fastapi, starlette, anyio and uvicorn are imported inside functions: spawned decode workers
# import this package for `decode_task`, and the base install has none of them.

from .app import create_app
from .decoders import decode_task
from .paths import MiB, read_confined, resolve_under_root
from .server import check_binding, make_server, require_extras, run
from .service import store_labels

__all__ = [
    "MiB",
    "check_binding",
    "create_app",
    "decode_task",
    "make_server",
    "read_confined",
    "require_extras",
    "resolve_under_root",
    "run",
    "store_labels",
]
