"""`snnctl serve [BUNDLE]`: an OpenAI-compatible API and a web chat page over a language model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from snnctl import config, ui


def command(
    bundle: Path | None = typer.Argument(None, help="Language-model bundle; the default chat model if omitted."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on; 0 picks a free one (announced)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="SNNCTL_API_KEY", show_envvar=True,
                                       help="Require 'Authorization: Bearer KEY' on every API route."),
    max_sessions: int = typer.Option(256, "--max-sessions", help="Conversation states kept between requests "
                                     "(least recently used evicted first); 0 keeps none."),
    session_memory: float = typer.Option(1024.0, "--session-memory", min=1.0,
                                         help="MiB all kept states may hold together."),
    max_batch: int = typer.Option(32, "--max-batch", help="Conversations stepped together; more wait in a queue."),
    model_id: str | None = typer.Option(None, "--model-id", help="Name clients use (default: the bundle folder's)."),
    json_out: bool = typer.Option(False, "--json", help="Announce the address as one JSON line on stdout."),
) -> None:
    """Serve a spiking language model over the OpenAI API, with a web chat page at /.

    Routes: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (stream: true gives
    server-sent events), GET / (the chat page). A request with "session_id" keeps that conversation's
    recurrent state, so a follow-up reads only its new tokens. Binds to 127.0.0.1 unless told otherwise.

    Examples:

      snnctl serve

      snnctl serve runs/chat --port 8080 --api-key secret

      snnctl serve runs/chat --port 0 --json   # prints {"event": "listening", "url": ...}
    """
    from snnctl.lm.bundle import load_lm
    from snnctl.lm.default import ensure_default
    from snnctl.serve.server import ServeJob, check, run

    job = ServeJob(host=host, port=port, api_key=api_key, max_sessions=max_sessions,
                   session_memory_mb=session_memory, max_batch=max_batch, model_id=model_id)
    check(job)
    config.prepare_runtime("cpu")
    lm = load_lm(bundle if bundle is not None else ensure_default())

    def announce(event: dict[str, Any]) -> None:
        if json_out:
            ui.print_json_line(event)
        ui.err.print(f"Serving [bold]{event['model']}[/bold] on {event['url']} "
                     f"(OpenAI API under /v1, chat page at /){' with an API key' if event['auth'] else ''}; "
                     "Ctrl-C stops.")

    run(lm, job, announce)
