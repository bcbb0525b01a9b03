"""Start `snnctl serve`: load the bundle, build the engine and app, listen, announce, run uvicorn.

The socket is bound before uvicorn starts so that `--port 0` (any free port) can be announced, and a
client that connects at once waits in the listen queue rather than being refused.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnctl.errors import UserError
from snnctl.lm.bundle import LMBundle
from snnctl.lm.template import dialogue_template, stop_ids
from snnctl.serve.app import Limits, Served, create_app
from snnctl.serve.engine import Engine, Voice
from snnctl.serve.sessions import SessionStore


@dataclass
class ServeJob:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_sessions: int = 256
    session_memory_mb: float = 1024.0
    max_batch: int = 32
    model_id: str | None = None


def check(job: ServeJob) -> None:
    if not 0 <= job.port <= 65535:
        raise UserError(f"port {job.port} is outside 0-65535", where="--port", hint="0 picks a free port")
    if job.max_sessions < 0:
        raise UserError(f"--max-sessions {job.max_sessions} is negative", where="--max-sessions",
                        hint="0 keeps no conversation state between requests")
    if job.max_batch < 1:
        raise UserError(f"--max-batch {job.max_batch} must be at least 1", where="--max-batch")
    if job.api_key is not None and not job.api_key.strip():
        raise UserError("the API key is empty", where="--api-key / SNNCTL_API_KEY", hint="give a key, or none")


def served(bundle: LMBundle, job: ServeJob) -> Served:
    """The app's view of one bundle: its engine (model, tokenizer, stops, session store) and name."""
    from snnctl.lm.session import ChatSession

    template = dialogue_template(bundle.chat)
    tok = bundle.tokenizer
    end = template["turn_end"] if template else ""
    voice = Voice(frozenset(stop_ids(tok, template)), end, tuple(tok.encode(end).ids) if end else ())
    store = SessionStore(job.max_sessions, int(job.session_memory_mb * 2**20))
    engine = Engine(bundle.model, tok, voice, store, job.max_batch)
    return Served(bundle, engine, job.model_id or Path(bundle.path).name, template, ChatSession(bundle).notice(),
                  job.api_key, Limits())


def bind(host: str, port: int) -> socket.socket:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}", where="--host/--port",
                        hint="pick another port (0 picks a free one)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(bundle: LMBundle, job: ServeJob, announce: Callable[[dict[str, Any]], None]) -> None:
    """Serve until interrupted; `announce` gets the address once the socket listens."""
    import uvicorn

    check(job)
    app = create_app(s := served(bundle, job))
    sock = bind(job.host, job.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    announce({"event": "listening", "url": f"http://{shown}:{port}", "model": s.model_id,
              "auth": job.api_key is not None, "max_sessions": job.max_sessions})
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
