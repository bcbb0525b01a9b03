"""`snnctl chat [BUNDLE]`: talk to a spiking language model in a terminal UI, or script it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from snnctl import config, ui
from snnctl.errors import UserError


def command(
    bundle: Path | None = typer.Argument(None, help="Language-model bundle; the default chat model if omitted."),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="Reply to this text, print and exit."),
    temperature: float = typer.Option(0.8, "--temperature", help="Sampling temperature; 0 is greedy."),
    top_k: int = typer.Option(40, "--top-k", help="Sample from the k likeliest tokens; 0 turns it off."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling mass; 1 turns it off."),
    max_tokens: int = typer.Option(200, "--max-tokens", help="Longest reply, in tokens."),
    seed: int | None = typer.Option(None, "--seed", help="Seed the sampler (the same reply every time)."),
    json_out: bool = typer.Option(False, "--json", help="Print reply and stats as JSON (needs --prompt or stdin)."),
) -> None:
    """Chat with a spiking language model.

    Without --prompt and with a terminal on stdin, opens the chat UI (Textual). With --prompt, or text
    on stdin, prints the reply and exits. With no BUNDLE, uses the default chat model, trained once on
    first use by the chat-ssm recipe (about 2 minutes on 2 cores) and cached.

    Examples:

      snnctl chat

      snnctl chat runs/small-ssm --prompt "ROMEO:" --max-tokens 100 --seed 0

      echo "Hello, how are you?" | snnctl chat --json
    """
    from snnctl.lm.bundle import load_lm
    from snnctl.lm.default import ensure_default
    from snnctl.lm.generate import Sampling
    from snnctl.lm.session import ChatSession

    sampling = Sampling(temperature=temperature, top_k=top_k, top_p=top_p, max_tokens=max_tokens, seed=seed).check()
    scripted = prompt is not None or not sys.stdin.isatty()
    if json_out and not scripted:
        raise UserError("--json needs --prompt or text on stdin", hint="the chat UI has no JSON output")
    config.prepare_runtime("cpu")
    text = prompt if prompt is not None else (sys.stdin.read() if scripted else None)
    if text is not None and not text.strip():
        raise UserError("the prompt is empty", hint="give text with --prompt or on stdin")
    session = ChatSession(load_lm(bundle if bundle is not None else ensure_default()), sampling)
    if text is None:
        from snnctl.lm.tui import ChatApp

        ChatApp(session).run()
        return
    reply, stats = session.ask(text)
    if json_out:
        ui.print_json({"reply": reply, "stats": stats.as_dict(), "model": str(session.bundle.path),
                       "notice": session.notice(), "sampling": sampling.__dict__})
        return
    ui.err.print(f"[dim]{session.notice()}[/dim]")
    sys.stdout.write(reply + ("\n" if not reply.endswith("\n") else ""))
    ui.err.print(f"[dim]{stats.tokens} tokens, {stats.tokens_per_s:.0f} tok/s"
                 + (f", {stats.spikes_per_token:.0f} spikes/token" if stats.spikes_per_token is not None else "")
                 + "[/dim]")
