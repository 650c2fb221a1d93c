"""The REST face: a local scoring endpoint (POST /invocations, GET /health) on FastAPI + uvicorn."""

# fastapi, starlette, anyio and uvicorn are imported inside functions: spawned decode workers
# import this module for `decode_task`, and the base install has none of them.

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import json
import multiprocessing as mp
import os
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from . import __version__
from .core.decode_pool import Failed, _Worker
from .core.errors import ImageError, NsfwTuiError, StoreError
from .core.images import MAX_FILE_BYTES, Decoded, load_image
from .core.preprocess import Preprocessing
from .core.report import CLASS_NAMES, decide
from .core.scorers import Scorer, max_over_frames

MiB = 1024 * 1024
MAX_PATH_CHARS = 4096
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
EXTRAS_HINT = "the REST endpoint needs extra packages: pip install 'nsfw-tui[serve]'"

Task = tuple[str, str, Any]  # ("bytes", name, data) | ("path", name, (real_path, root))
Result = Decoded | Failed
LabelReader = Callable[[list[str]], dict[str, str]]


class Refused(Exception):
    """A request refused as a whole: an HTTP status and one clear sentence."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


class BodyTooLarge(Refused):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body is over the {limit / MiB:g} MiB limit", {"Connection": "close"}
        )


def require_extras() -> None:
    """One clear line when the `serve` extra is not installed."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "python_multipart")):
        raise NsfwTuiError(EXTRAS_HINT)


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def check_binding(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token (then every request must carry it)."""
    if not is_loopback(host) and not token:
        raise NsfwTuiError(
            f"refusing to serve on {host} without a token: pass --token T (clients then send "
            "'Authorization: Bearer T'), or bind to 127.0.0.1"
        )


# -- paths: everything a request names must stay under the root ----------------------------


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([root, path]) == root


def resolve_under_root(raw: object, root: str | None, index: int) -> str:
    """The real path ``raw`` names under ``root`` (itself real), or Refused.

    Symbolic links are resolved before the check, so a link out of the root is refused;
    absolute paths are accepted only when they lie under the root.
    """
    where = f"inputs[{index}]"
    if root is None:
        raise Refused(
            403,
            "this server reads no paths: it was started without --root; send the image bytes "
            "(multipart upload or {'images': [base64, ...]}) or restart with --root DIR",
        )
    if not isinstance(raw, str) or not raw:
        raise Refused(400, f"{where} must be a non-empty string")
    if "\x00" in raw:
        raise Refused(400, f"{where} contains a NUL byte")
    if len(raw) > MAX_PATH_CHARS:
        raise Refused(400, f"{where} is longer than {MAX_PATH_CHARS} characters")
    try:
        real = os.path.realpath(os.path.join(root, raw))
        inside = _under(real, root)
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, unencodable surrogates
        raise Refused(400, f"{where} cannot be resolved: {_oserror_text(exc)}") from None
    if not inside:
        raise Refused(403, f"{where} is outside the served root")
    return real


def _oserror_text(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def _opened_path(fd: int, path: str) -> str:
    """Where an open descriptor really points (Linux: /proc), to re-check after open()."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(path)
        if not os.path.samestat(os.fstat(fd), os.stat(real)):
            raise ImageError("unreadable", "the file changed while it was opened") from None
        return real


def read_confined(path: str, root: str) -> bytes:
    """A regular file's bytes, opened without following a final symlink and re-checked.

    Closes the gap between the check and the open: a file swapped for a link (or a folder
    swapped for a link to elsewhere) after ``resolve_under_root`` is refused here.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError("missing", "file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError("unreadable", "the path became a symbolic link") from None
        raise ImageError("unreadable", f"cannot open file: {_oserror_text(exc)}") from None
    try:
        if not _under(_opened_path(fd, path), root):
            raise ImageError("unreadable", "the file is no longer under the served root")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("unreadable", "not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageError("too-large", f"file is over the {MAX_FILE_BYTES // MiB} MiB limit")
        parts, total = [], 0
        while chunk := os.read(fd, MiB):
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise ImageError("too-large", f"file is over the {MAX_FILE_BYTES // MiB} MiB limit")
            parts.append(chunk)
        return b"".join(parts)
    except OSError as exc:
        raise ImageError("unreadable", f"cannot read file: {_oserror_text(exc)}") from None
    finally:
        os.close(fd)


# -- decoding: untrusted bytes in spawned worker processes with a deadline -----------------


def decode_task(task: Task, spec: Preprocessing, use_draft: bool, max_frames: int) -> Result:
    """Read (paths), hash and decode one image; every failure becomes a ``Failed``."""
    kind, name, payload = task
    sha256 = size = None
    try:
        data = read_confined(*payload) if kind == "path" else payload
        sha256, size = hashlib.sha256(data).hexdigest(), len(data)
        draft = spec.draft_size() if use_draft else None
        loaded = load_image(data, draft=draft, max_frames=max_frames)
        del data
        pixels = []
        while loaded.frames:
            pixels.append(spec.pixels(loaded.frames.pop(0)))
        return Decoded(
            sha256, size, loaded.width, loaded.height, loaded.format, loaded.n_frames, pixels, name
        )
    except ImageError as exc:
        return Failed(name, ImageError(exc.kind, exc.reason), sha256, size)
    except MemoryError:
        return Failed(name, ImageError("bomb", "ran out of memory while decoding"), sha256, size)
    except Exception as exc:  # a decoder bug costs one image, never the request
        return Failed(name, ImageError("corrupt", f"{type(exc).__name__}: {exc}"), sha256, size)


Decoder = Callable[[Task, Preprocessing, bool, int], Result]


class Decoders:
    """Long-lived decode processes shared by all requests; a stuck or crashed one is replaced.

    ``workers=0`` decodes in the calling thread: no isolation, and the deadline is checked
    only before an image starts (for tests and tiny setups).
    """

    def __init__(
        self, spec: Preprocessing, *, workers: int, use_draft: bool, max_frames: int,
        decoder: Decoder = decode_task,
    ) -> None:  # fmt: skip
        self.spec, self.workers, self.decoder = spec, workers, decoder
        self.use_draft, self.max_frames = use_draft, max_frames
        self.restarts = 0
        self._ctx = mp.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._started = self._closed = False
        self._lock = threading.Lock()

    def _spawn(self) -> _Worker:
        """A new worker, sent an empty warm-up task that it answers once its imports are done."""
        w = _Worker(self._ctx, self)
        with contextlib.suppress(OSError):
            w.conn.send(("bytes", "warm-up", b""))
        return w

    def _settle(self, w: _Worker) -> _Worker:
        with contextlib.suppress(EOFError, OSError):
            if w.conn.poll(60):
                w.conn.recv()
        return w

    def _replace(self) -> None:  # in its own thread: no request waits on a new worker's imports
        w = self._settle(self._spawn())
        if self._closed:
            w.stop()
        else:
            self._idle.put(w)

    def start(self) -> None:
        with self._lock:
            if not self._started:
                for w in [self._spawn() for _ in range(self.workers)]:  # importing side by side
                    self._idle.put(self._settle(w))
                self._started = True

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return

    def decode(self, task: Task, deadline: float) -> Result:
        """Blocking: decode one task, waiting for a free worker no later than ``deadline``."""
        late = Failed(task[1], ImageError("timeout", "decoding ran past the request's time limit"))
        if time.monotonic() >= deadline:
            return late
        if self.workers <= 0:
            return self.decoder(task, self.spec, self.use_draft, self.max_frames)
        self.start()  # normally done by the app's startup
        try:
            w = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return late
        healthy = False
        try:
            w.conn.send(task)
            if w.conn.poll(max(0.0, deadline - time.monotonic())):
                result, healthy = w.conn.recv(), True
                return result
            failed = late
        except (EOFError, OSError):
            w.proc.join(1)
            reason = f"the decoder process died (exit code {w.proc.exitcode})"
            failed = Failed(task[1], ImageError("crash", reason))
        finally:
            if healthy:
                self._idle.put(w)
            else:  # stuck, dead or interrupted mid-task: a fresh process takes its place
                w.stop(kill=True)
                self.restarts += 1
                threading.Thread(target=self._replace, daemon=True).start()
        return failed


# -- the service: parse, decode, score, decide ----------------------------------------------


@dataclass
class Service:
    scorer: Scorer
    threshold: float
    model_id: str
    root: str | None
    max_images: int
    decoders: Decoders
    labels: LabelReader | None
    batch_size: int
    decode_timeout_s: float
    queue_timeout_s: float
    gate: asyncio.Semaphore

    def tasks_from_json(self, body: bytes) -> list[Task]:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise Refused(400, f"malformed JSON: {str(exc)[:200]}") from None
        if not isinstance(doc, dict):
            raise Refused(400, "the body must be a JSON object with 'inputs' or 'images'")
        unknown = sorted(set(doc) - {"inputs", "images"})
        if unknown:
            raise Refused(400, f"unknown keys {unknown}; send 'inputs' (paths) or 'images'")
        if not doc:
            raise Refused(400, "send 'inputs' (paths under the root) or 'images' (base64)")
        inputs, images = doc.get("inputs", []), doc.get("images", [])
        for key, value in (("inputs", inputs), ("images", images)):
            if not isinstance(value, list):
                raise Refused(400, f"'{key}' must be a list")
        self.check_count(len(inputs) + len(images))
        tasks: list[Task] = []
        for i, raw in enumerate(inputs):
            real = resolve_under_root(raw, self.root, i)
            tasks.append(("path", f"inputs[{i}]", (real, self.root)))
        for i, text in enumerate(images):
            if not isinstance(text, str) or not text:
                raise Refused(400, f"images[{i}] must be a non-empty base64 string")
            try:
                data = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise Refused(400, f"images[{i}] is not valid base64") from None
            tasks.append(("bytes", f"images[{i}]", data))
        return tasks

    def check_count(self, n: int) -> None:
        if n > self.max_images:
            raise Refused(400, f"{n} images in one request; the limit is {self.max_images}")

    async def predict(self, tasks: list[Task]) -> tuple[int, list[dict]]:
        import anyio

        if not tasks:
            return 200, []
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await self.gate.acquire()
        except TimeoutError:
            raise Refused(
                503, "busy: every scoring slot stayed taken; retry shortly", {"Retry-After": "1"}
            ) from None
        try:
            deadline = time.monotonic() + self.decode_timeout_s
            limiter = anyio.CapacityLimiter(max(1, self.decoders.workers))
            results: list[Result] = list(
                await asyncio.gather(
                    *(
                        anyio.to_thread.run_sync(self.decoders.decode, t, deadline, limiter=limiter)
                        for t in tasks
                    )
                )
            )
            decoded = [r for r in results if isinstance(r, Decoded)]
            probs = await anyio.to_thread.run_sync(self.score, decoded) if decoded else {}
        finally:
            self.gate.release()
        shas = sorted({r.sha256 for r in results if r.sha256})
        labels = await anyio.to_thread.run_sync(self.read_labels, shas) if shas else {}
        items = [self.item(r, probs, labels) for r in results]
        if any(i["prediction"] is not None for i in items):
            return 200, items
        timed_out = any(isinstance(r, Failed) and r.error.kind == "timeout" for r in results)
        return (504 if timed_out else 422), items

    def score(self, decoded: list[Decoded]) -> dict[str, float]:
        """Probability per content hash; duplicates are scored once, frames in batches."""
        unique = {d.sha256: d for d in decoded}
        frames = [px for d in unique.values() for px in d.pixels]
        parts = [
            self.scorer.score(np.stack(frames[i : i + self.batch_size])).probabilities
            for i in range(0, len(frames), self.batch_size)
        ]
        counts = [len(d.pixels) for d in unique.values()]
        probs = max_over_frames(np.concatenate(parts), counts)
        return dict(zip(unique, probs, strict=True))

    def read_labels(self, shas: list[str]) -> dict[str, str]:
        if self.labels is None:
            return {}
        try:
            return self.labels(shas)
        except StoreError as exc:
            raise Refused(503, f"cannot read labels: {exc}", {"Retry-After": "1"}) from None

    def item(self, r: Result, probs: dict[str, float], labels: dict[str, str]) -> dict:
        prob = probs.get(r.sha256) if isinstance(r, Decoded) else None
        label = labels.get(r.sha256) if r.sha256 else None
        pred = decide(prob, self.threshold, label)
        out: dict[str, Any] = {
            "probability": None if prob is None else round(float(prob), 6),
            "prediction": pred,
            "class": "error" if pred is None else CLASS_NAMES[pred],
        }
        if isinstance(r, Failed):
            out["error"] = f"{r.error.kind}: {r.error.reason}"
        if label is not None:
            out["label"] = label
        return out


def store_labels(store_path: str | os.PathLike) -> LabelReader:
    """Current labels by content hash; each call opens its own connection (thread-bound)."""

    def read(shas: list[str]) -> dict[str, str]:
        from .core.store import Store

        with Store.open(store_path, check=False) as store:
            return {sha: ev.label for sha, ev in store.current_labels(shas).items()}

    return read


# -- the ASGI app ---------------------------------------------------------------------------


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0].rstrip(".") if value.count(":") <= 1 else value


class Guard:
    """Pure ASGI middleware in front of everything: Host/Origin, bearer token, body cap.

    The Host check stops DNS rebinding (a web page whose name suddenly resolves to
    127.0.0.1); the Origin check stops other pages from posting to the endpoint; the body
    is counted as it streams, so an oversized or chunked body is cut at the limit.
    """

    def __init__(self, app, *, allowed_hosts: frozenset[str] | None, token: str | None,
                 max_body_bytes: int) -> None:  # fmt: skip
        self.app, self.allowed_hosts, self.max_body_bytes = app, allowed_hosts, max_body_bytes
        self.token = token.encode("utf-8") if token else None

    def _allowed(self, name: str | None) -> bool:
        return name is not None and (self.allowed_hosts is None or name in self.allowed_hosts)

    def _same_origin(self, origin: str, port: int | None) -> bool:
        """A page of this very server (a browser sends Origin on cross-site POSTs)."""
        try:
            url = urlsplit(origin)
            origin_port = url.port or {"http": 80, "https": 443}.get(url.scheme)
        except ValueError:
            return False
        return self._allowed(url.hostname) and (port is None or origin_port == port)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._check(headers, (scope.get("server") or (None, None))[1])
        if problem is not None:
            await _reply(problem, scope, receive, send)
            return
        seen = 0

        async def capped_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, capped_receive, send)

    def _check(self, headers: dict[str, str], port: int | None) -> Refused | None:
        if not self._allowed(_host_name(headers["host"]) if "host" in headers else None):
            return Refused(400, "Host header not allowed (this server answers only its own name)")
        origin = headers.get("origin")
        if origin is not None and not self._same_origin(origin, port):
            return Refused(403, "cross-origin requests are not allowed")
        if self.token is not None:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("latin-1"), self.token
            ):
                return Refused(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return BodyTooLarge(self.max_body_bytes)
        return None


async def _reply(exc: Refused, scope, receive, send) -> None:
    from starlette.responses import JSONResponse

    await JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)(
        scope, receive, send
    )


def _obj(required: bool = True, **props: dict) -> dict:
    return {"type": "object", "properties": props, "required": list(props) if required else []}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TEXT = {"type": "string"}
_ERROR = _obj(detail=_TEXT)
_ITEM = _obj(
    probability={"type": ["number", "null"], "minimum": 0, "maximum": 1},
    prediction={"enum": [0, 1, None]},
    **{"class": {"enum": ["NSFW", "SFW", "error"]}},
)
_ITEM["properties"] |= {
    "error": {"type": "string", "description": "why the image has no probability"},
    "label": {"enum": ["nsfw", "sfw"], "description": "a person's label; it decides"},
}
_PREDICTIONS = _obj(predictions={"type": "array", "items": _ITEM}, model=_TEXT)
_HEALTH = _obj(status=_TEXT, model=_TEXT, threshold={"type": "number"})


def _request_body(max_images: int) -> dict:
    def listing(item: dict, **more) -> dict:
        return {"type": "array", "maxItems": max_images, "items": item, **more}

    path = {"type": "string", "minLength": 1, "maxLength": MAX_PATH_CHARS}
    json_body = _obj(
        False,
        inputs=listing(path | {"pattern": "^[^\\u0000]+$"}),
        images=listing({"type": "string", "format": "byte", "minLength": 1}),
    )
    json_body |= {"additionalProperties": False, "minProperties": 1}
    upload = _obj(files=listing({"type": "string", "format": "binary"}, minItems=1))
    media = {"application/json": json_body, "multipart/form-data": upload}
    return {"required": True, "content": {k: {"schema": v} for k, v in media.items()}}


def create_app(
    scorer: Scorer,
    *,
    threshold: float,
    model_id: str | None = None,
    root: str | os.PathLike | None = None,
    token: str | None = None,
    max_body_bytes: int = 32 * MiB,
    max_images: int = 64,
    allowed_hosts: Sequence[str] | None = LOOPBACK_HOSTS,
    labels: LabelReader | None = None,
    decode_workers: int = 2,
    decode_timeout_s: float = 20.0,
    decoder: Decoder = decode_task,
    use_draft: bool = True,
    max_frames: int = 8,
    score_slots: int = 1,
    queue_timeout_s: float = 10.0,
    batch_size: int = 16,
):
    """The ASGI app. ``allowed_hosts=None`` accepts any Host (only sensible with a token)."""
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.requests import ClientDisconnect

    root_real = None
    if root is not None:
        root_real = os.path.realpath(root)
        if not os.path.isdir(root_real):
            raise NsfwTuiError(f"--root must be an existing folder, got {root}")
    model_id = model_id or scorer.id
    decoders = Decoders(scorer.preprocessing, workers=decode_workers, use_draft=use_draft,
                        max_frames=max_frames, decoder=decoder)  # fmt: skip
    service = Service(
        scorer, threshold, model_id, root_real, max_images, decoders, labels, batch_size,
        decode_timeout_s, queue_timeout_s, asyncio.Semaphore(max(1, score_slots)),
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await anyio.to_thread.run_sync(decoders.start)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(decoders.close)

    app = FastAPI(
        title="nsfw-tui",
        version=__version__,
        description="Scores images for NSFW content with the active model of nsfw-tui.",
        docs_url=None,  # Swagger UI would load scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )

    @app.exception_handler(Refused)
    async def refused(request, exc: Refused):
        return JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def gone(request, exc):  # nobody is left to read it
        return JSONResponse({"detail": "client disconnected"}, 400)

    common = {
        400: _json(_ERROR, "malformed request, too many images, or a foreign Host header"),
        401: _json(_ERROR, "missing or wrong bearer token (only when started with --token)"),
        403: _json(_ERROR, "a path outside the served root, paths disabled, or cross-origin"),
    }

    @app.get("/health", summary="Liveness and the model in use",
             responses={200: _json(_HEALTH, "the server is up"), **common})  # fmt: skip
    async def get_health():
        return JSONResponse({"status": "ok", "model": model_id, "threshold": threshold})

    async def invocations(request: Request):
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == "application/json" or media.endswith("+json"):
            body = await request.body()
            tasks = await anyio.to_thread.run_sync(service.tasks_from_json, body)
        elif media == "multipart/form-data":
            tasks = await _multipart_tasks(request, service, max_body_bytes)
        else:
            raise Refused(415, "send Content-Type: application/json or multipart/form-data")
        status, items = await service.predict(tasks)
        return JSONResponse({"predictions": items, "model": model_id}, status)

    # the annotation must be the class itself: this module's annotations are strings
    invocations.__annotations__ = {"request": Request}
    app.add_api_route(
        "/invocations",
        invocations,
        methods=["POST"],
        summary="Score images: paths under the root, uploads, or base64",
        openapi_extra={"requestBody": _request_body(max_images)},
        responses={
            200: _json(_PREDICTIONS, "one prediction per image, in request order"),
            **common,
            413: _json(_ERROR, "body over the size limit"),
            415: _json(_ERROR, "neither JSON nor multipart"),
            422: _json(_PREDICTIONS, "no image could be decoded; each item says why"),
            503: _json(_ERROR, "overloaded: every scoring slot stayed busy"),
            504: _json(_PREDICTIONS, "no image decoded within the time limit"),
        },
    )

    return Guard(app, allowed_hosts=None if allowed_hosts is None else
                 frozenset(_host_name(h) for h in allowed_hosts),
                 token=token, max_body_bytes=max_body_bytes)  # fmt: skip


async def _multipart_tasks(request, service: Service, max_body_bytes: int) -> list[Task]:
    from starlette.datastructures import UploadFile

    limit = service.max_images + 1
    tasks: list[Task] = []
    async with request.form(
        max_files=limit, max_fields=limit, max_part_size=max_body_bytes
    ) as form:
        parts = list(form.multi_items())
        service.check_count(len(parts))
        for i, (field, value) in enumerate(parts):
            if not isinstance(value, UploadFile):
                raise Refused(400, f"form field {field!r} is not a file; upload images as files")
            tasks.append(("bytes", f"files[{i}]", await value.read()))
    if not tasks:
        raise Refused(400, "the upload holds no files")
    return tasks


# -- running it -----------------------------------------------------------------------------


def _header_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol, closing connections whose request headers take too long.

    uvicorn times out idle keep-alive connections only; a client that sends half its
    headers would otherwise hold its connection (and a `limit_concurrency` slot) forever.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._watch_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_headers()

        def connection_lost(self, exc) -> None:
            self._stop_watch()
            super().connection_lost(exc)

        def _watch_headers(self) -> None:
            if self.conn.their_state is not h11.IDLE:
                self._stop_watch()
            elif self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _stop_watch(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutH11


def make_server(
    app,
    host: str,
    port: int,
    *,
    limit_concurrency: int = 64,
    timeout_keep_alive: int = 5,
    header_timeout_s: float = 10.0,
    log_level: str = "info",
    access_log: bool = True,
):
    """A uvicorn server for ``app``; ``server.run(sockets=[...])`` serves on given sockets."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_header_timeout_protocol(header_timeout_s),
        lifespan="on",
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=timeout_keep_alive,
        timeout_graceful_shutdown=5,
        h11_max_incomplete_event_size=16 * 1024,
        server_header=False,
        proxy_headers=False,
        log_level=log_level,
        access_log=access_log,
    )
    return uvicorn.Server(config)


def allowed_hosts_for(host: str, token: str | None, extra: Sequence[str] = ()) -> list[str] | None:
    """Host names to answer: loopback names, the bound host, and ``extra``.

    Bound to a wildcard address with a token and no ``extra``, any Host is answered: the
    Host check guards tokenless loopback servers against DNS rebinding; the token guards
    the rest.
    """
    if "*" in extra:
        return None
    wildcard = host in ("0.0.0.0", "::", "")
    if wildcard and token and not extra:
        return None
    return sorted(LOOPBACK_HOSTS | {_host_name(host)} | {_host_name(h) for h in extra})


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise NsfwTuiError(f"cannot listen on {host}:{port}: {_oserror_text(exc)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise NsfwTuiError(f"cannot listen on {host}:{port}: {_oserror_text(exc)}") from None
    return sock


def run(
    host: str,
    port: int,
    *,
    scorer: Scorer,
    threshold: float,
    token: str | None = None,
    allow_hosts: Sequence[str] = (),
    limit_concurrency: int = 64,
    timeout_keep_alive: int = 5,
    header_timeout_s: float = 10.0,
    log_level: str = "info",
    announce: Callable[[], None] | None = None,
    **app_options: Any,
) -> None:
    """Serve until Ctrl+C. Refuses a non-loopback address without a token before binding."""
    check_binding(host, token)
    require_extras()
    sock = _bind(host, port)  # a busy port is one clear line, before any worker starts
    app = create_app(
        scorer,
        threshold=threshold,
        token=token,
        allowed_hosts=allowed_hosts_for(host, token, allow_hosts),
        **app_options,
    )
    server = make_server(
        app,
        host,
        port,
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=timeout_keep_alive,
        header_timeout_s=header_timeout_s,
        log_level=log_level,
    )
    if announce is not None:
        announce()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl+C once it has stopped
        server.run(sockets=[sock])
    if not server.started:
        raise NsfwTuiError(f"could not serve on {host}:{port} (see the log above)")
