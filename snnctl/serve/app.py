"""The HTTP side of `snnctl serve`: FastAPI routes over the engine, OpenAI's shapes, limits and errors.

Handlers only validate, render the conversation to tokens and wait on the engine (which runs in its
own thread), so the event loop stays free however many replies are being generated. Every failure a
client can cause is an OpenAI-style JSON error with a 4xx status; anything else is a 500 with the
same body and no traceback (the traceback goes to the server's log).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from snnctl.lm.bundle import LMBundle
from snnctl.lm.generate import Sampling
from snnctl.lm.template import render
from snnctl.serve import protocol as P
from snnctl.serve.engine import Engine
from snnctl.serve.engine import Request as Job

DISCONNECT_CHECK_S = 0.2  # how often a whole (non-streamed) reply looks for a client that left
log = logging.getLogger("snnctl.serve")


@dataclass
class Limits:
    max_tokens: int = 2048  # most tokens one reply may ask for
    default_tokens: int = 256
    max_body_bytes: int = 1 << 20
    max_waiting: int = 256  # requests queued beyond the batch before new ones get 429


@dataclass
class Served:
    """What the routes need: the bundle, its engine, how it is named and guarded."""

    bundle: LMBundle
    engine: Engine
    model_id: str
    template: dict[str, Any] | None
    notice: str
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)


def create_app(served: Served) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served.engine.start()
        yield
        served.engine.stop()

    app = FastAPI(title="snnctl serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=served.limits.max_body_bytes)
    _errors(app)
    guard = [Depends(_key_check(served.api_key))]
    page = (files("snnctl.serve") / "web" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/v1/models", dependencies=guard)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_card(served)]}

    @app.get("/v1/models/{model_id}", dependencies=guard)
    async def model(model_id: str) -> dict[str, Any]:
        _check_model(served, model_id)
        return _card(served)

    @app.post("/v1/chat/completions", dependencies=guard, response_model=None)
    async def chat(body: P.ChatRequest, request: Request) -> JSONResponse | StreamingResponse:
        _check_model(served, body.model)
        if served.template is not None and body.messages[-1].speaker() != "user":
            raise P.APIError(400, "the last message must be the user's (the model replies to it)", param="messages")
        text = render([(m.speaker(), m.text()) for m in body.messages], served.template)
        return await _complete(served, request, body, text, chat=True)

    @app.post("/v1/completions", dependencies=guard, response_model=None)
    async def completions(body: P.CompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
        _check_model(served, body.model)
        return await _complete(served, request, body, body.text(), chat=False)

    @app.get("/v1/snnctl/status", dependencies=guard)
    async def status() -> dict[str, Any]:
        return {"model": served.model_id, "engine": served.engine.load(), "sessions": served.engine.store.summary()}

    return app


def _card(served: Served) -> dict[str, Any]:
    model = served.bundle.model
    return {"id": served.model_id, "object": "model", "created": 0, "owned_by": "snnctl",
            "snnctl": {"spiking": bool(getattr(model, "spiking", False)), "params": served.bundle.params,
                       "context": int(getattr(model, "max_context", 0)), "dialogue": served.template is not None,
                       "notice": served.notice}}


def _check_model(served: Served, name: str) -> None:
    if name != served.model_id:
        raise P.APIError(404, f"The model '{name}' does not exist; this server has '{served.model_id}'",
                         code="model_not_found", param="model")


def _key_check(api_key: str | None) -> Callable[[Request], Awaitable[None]]:
    async def check(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            what = "Incorrect API key provided" if token else "Missing API key: send 'Authorization: Bearer KEY'"
            raise P.APIError(401, what, code="invalid_api_key")

    return check


async def _complete(served: Served, request: Request, body: P.Sampled, text: str,
                    chat: bool) -> JSONResponse | StreamingResponse:
    """Check the request against the model's limits, queue it, and answer whole or streamed."""
    ids = (await asyncio.to_thread(served.bundle.tokenizer.encode, text)).ids  # up to 1 MiB: not on the loop
    context = int(getattr(served.bundle.model, "max_context", 1 << 30))
    if not ids:
        raise P.APIError(400, "the prompt is empty", param="messages" if chat else "prompt")
    if len(ids) >= context:
        raise P.APIError(400, f"This model's maximum context length is {context} tokens; the prompt has "
                         f"{len(ids)}", code="context_length_exceeded", param="messages" if chat else "prompt")
    if served.engine.load()["waiting"] >= served.limits.max_waiting:
        raise P.APIError(429, "the server is at capacity; retry shortly", kind="rate_limit_error", code="busy")
    sampling = Sampling(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                        max_tokens=body.limit(served.limits.default_tokens, served.limits.max_tokens), seed=body.seed)
    loop, events = asyncio.get_running_loop(), asyncio.Queue[tuple[str, Any]]()
    job = Job(ids=ids, sampling=sampling, stops=body.stops(), session_id=body.session_id,
              emit=lambda kind, data: loop.call_soon_threadsafe(events.put_nowait, (kind, data)))
    served.engine.submit(job)
    reply = Reply(served.model_id, job, events, chat, len(ids))
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(reply.sse(usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return JSONResponse(await reply.whole(request))


class Reply:
    """One request's answer as it arrives from the engine: whole, or as server-sent events."""

    def __init__(self, model_id: str, job: Job, events: asyncio.Queue[tuple[str, Any]], chat: bool,
                 prompt_tokens: int) -> None:
        self.model_id, self.job, self.events, self.chat, self.prompt_tokens = model_id, job, events, chat, prompt_tokens
        self.rid = P.new_id("chatcmpl" if chat else "cmpl")
        self.kind = "chat.completion" if chat else "text_completion"

    def _tail(self, result: dict[str, Any]) -> dict[str, Any]:
        return {"usage": P.usage(self.prompt_tokens, result["stats"].tokens, result["reused"]),
                "snnctl": P.extension(result, self.prompt_tokens, self.job.session_id)}

    async def whole(self, request: Request) -> dict[str, Any]:
        """The reply once done; a client that leaves first (a timeout) has its generation stopped, as
        Starlette does not cancel a handler whose client is gone. The check runs on a clock, not only
        when the queue is quiet: a fast model emits text without pause to the end of its reply."""
        checked = time.monotonic()
        try:
            while True:
                try:
                    kind, data = await asyncio.wait_for(self.events.get(), timeout=DISCONNECT_CHECK_S)
                except TimeoutError:  # quiet for a whole interval: the check below is due
                    kind, data = "", None
                if time.monotonic() - checked >= DISCONNECT_CHECK_S:
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        self.job.cancelled.set()
                        raise P.APIError(499, "client closed the request", code="client_closed") from None
                if kind == "error":
                    raise P.APIError(500, data, kind="server_error")
                if kind == "done":
                    choice = P.chat_choice(data["text"], data["finish_reason"], delta=False) if self.chat \
                        else P.text_choice(data["text"], data["finish_reason"])
                    return {**P.envelope(self.kind, self.rid, self.model_id), "choices": [choice], **self._tail(data)}
        except asyncio.CancelledError:
            self.job.cancelled.set()
            raise

    def _chunk(self, text: str, finish: str | None = None, **extra: Any) -> str:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        choice = P.chat_choice(text, finish, delta=True) if self.chat else P.text_choice(text, finish)
        return _event({**P.envelope(kind, self.rid, self.model_id), "choices": [choice], **extra})

    async def sse(self, include_usage: bool) -> AsyncIterator[str]:
        finished = False
        try:
            if self.chat:
                first = {**P.envelope("chat.completion.chunk", self.rid, self.model_id),
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                      "logprobs": None, "finish_reason": None}]}
                yield _event(first)
            while not finished:
                kind, data = await self.events.get()
                if kind == "text":
                    yield self._chunk(data)
                elif kind == "error":
                    finished = True
                    yield _event(P.APIError(500, data, kind="server_error").body())
                else:
                    finished = True
                    tail = self._tail(data)
                    yield self._chunk("", data["finish_reason"], snnctl=tail["snnctl"])
                    if include_usage:
                        kind = "chat.completion.chunk" if self.chat else self.kind
                        yield _event({**P.envelope(kind, self.rid, self.model_id), "choices": [],
                                      "usage": tail["usage"]})
            yield "data: [DONE]\n\n"
        finally:  # the client left mid-stream: the engine drops the row at its next step
            if not finished:
                self.job.cancelled.set()


def _event(data: dict[str, Any]) -> str:
    """One server-sent event in the framing OpenAI's clients parse."""
    return "data: " + json.dumps(data) + "\n\n"


def _errors(app: FastAPI) -> None:
    """Every error as OpenAI's body: {"error": {"message", "type", "param", "code"}}."""

    @app.exception_handler(P.APIError)
    async def api_error(request: Request, err: P.APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"msg": "invalid request", "loc": ()}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            message, loc = "the request body is not valid JSON", []
        elif first.get("type") == "missing":
            message = f"missing required field '{'.'.join(loc)}'"
        else:
            message = f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid value')}"
        return JSONResponse(P.APIError(400, message, param=".".join(loc) or None).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
        return JSONResponse(P.APIError(err.status_code, str(err.detail), code=code).body(), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def crash(request: Request, err: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse(P.APIError(500, "internal server error", kind="server_error").body(), status_code=500)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413: by the declared length, or while a chunked
    body streams in (then the body is buffered here, at most `limit` bytes, and replayed to the app:
    an error raised while FastAPI reads the body would reach the client as a 400)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.limit:
                return await self._refuse(send)
            return await self.app(scope, receive, send)
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await self._refuse(send)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(P.APIError(413, f"request body over {self.limit} bytes", code="body_too_large").body())
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body.encode()})
