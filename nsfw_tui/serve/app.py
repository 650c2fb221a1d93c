"""The REST face's ASGI app: the Guard middleware, the OpenAPI schema and create_app."""

# fastapi, starlette, anyio and uvicorn are imported inside functions: spawned decode workers
# import this package for `decode_task`, and the base install has none of them.

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import Sequence
from urllib.parse import urlsplit

from .. import __version__
from ..core.decode_pool import DecodePool, Decoder
from ..core.errors import NsfwTuiError
from ..core.scorers import Scorer
from .decoders import Task, decode_task, task_name
from .paths import MAX_PATH_CHARS, MiB, Refused
from .service import LabelReader, Service

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class BodyTooLarge(Refused):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body is over the {limit / MiB:g} MiB limit", {"Connection": "close"}
        )


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

    def __init__(
        self, app, *, allowed_hosts: frozenset[str] | None, token: str | None, max_body_bytes: int
    ) -> None:
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
    "label": {
        "enum": ["nsfw", "sfw"],
        "description": "a person's label, which decides (only from a server run with --labels)",
    },
    "frame_time": {
        "type": "number",
        "minimum": 0,
        "description": "a video: seconds into it of the sampled frame that scored highest",
    },
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
    max_pending: int = 32,
    batch_size: int = 16,
):
    """The ASGI app. ``allowed_hosts=None`` accepts any Host (only sensible with a token).

    ``labels`` reads a person's labels from the store: only with it do answers carry a
    label (which then decides); without it anyone who can post bytes could learn whether
    they carry a label in the store. At most ``max_pending`` /invocations requests are in
    flight (reading, waiting for one of ``score_slots``, decoding, scoring); one more is
    answered 503 at once, and a request that waits ``queue_timeout_s`` for a slot gets 503
    too. /health never waits behind them.
    """
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
    decoders = DecodePool(
        scorer.preprocessing,
        workers=decode_workers,
        timeout_s=decode_timeout_s,
        use_draft=use_draft,
        max_frames=max_frames,
        decoder=decoder,
        name_of=task_name,
    )
    service = Service(
        scorer=scorer,
        threshold=threshold,
        model_id=model_id,
        root=root_real,
        max_images=max_images,
        decoders=decoders,
        labels=labels,
        batch_size=batch_size,
        decode_timeout_s=decode_timeout_s,
        queue_timeout_s=queue_timeout_s,
        gate=asyncio.Semaphore(max(1, score_slots)),
    )

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
        403: _json(_ERROR, "paths sent to a server started without --root, or cross-origin"),
    }

    @app.get(
        "/health",
        summary="Liveness and the model in use",
        responses={200: _json(_HEALTH, "the server is up"), **common},
    )
    async def get_health():
        return JSONResponse({"status": "ok", "model": model_id, "threshold": threshold})

    pending = 0  # /invocations in flight: the event loop's own, so a plain counter

    async def invocations(request: Request):
        nonlocal pending
        if pending >= max_pending:
            raise Refused(
                503, f"busy: {pending} requests in flight; retry shortly", {"Retry-After": "1"}
            )
        pending += 1
        try:
            return await _invoke(request)
        finally:
            pending -= 1

    async def _invoke(request: Request):
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
            503: _json(_ERROR, "overloaded: too many requests in flight, or no scoring slot"),
            504: _json(_PREDICTIONS, "no image decoded within the time limit"),
        },
    )

    return Guard(
        app,
        allowed_hosts=None
        if allowed_hosts is None
        else frozenset(_host_name(h) for h in allowed_hosts),
        token=token,
        max_body_bytes=max_body_bytes,
    )


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
