"""A conversation with a language-model bundle: what `snnctl chat` (TUI and scripts) runs on.

A dialogue model (trained on turns with the chat template) gets each message wrapped as a user turn
and answers as the assistant until it starts the next turn. A plain-text model continues what it is
given. Either way the recurrent state carries the whole conversation, and `/reset` starts a new one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from snnctl.artifact import write_atomic
from snnctl.errors import UserError
from snnctl.lm.bundle import LMBundle
from snnctl.lm.generate import Generator, ReplyStats, Sampling
from snnctl.lm.template import dialogue_template, user_turn
from snnctl.lm.template import stop_ids as stop_tokens

MAX_MESSAGE_CHARS = 20_000


class ChatSession:
    def __init__(self, bundle: LMBundle, sampling: Sampling | None = None) -> None:
        self.bundle = bundle
        self.sampling = (sampling or Sampling()).check()
        self.template = dialogue_template(bundle.chat)
        self.dialogue = self.template is not None
        stop_ids = stop_tokens(bundle.tokenizer, self.template)
        self.generator = Generator(bundle.model, bundle.tokenizer, stop_ids)
        self.turns: list[dict[str, Any]] = []
        self.last_stats: ReplyStats | None = None

    # -- what the user is told -------------------------------------------------------------------
    def notice(self) -> str:
        """A plain statement of what this model is and is not, shown before the first message."""
        m = self.bundle.manifest
        chat = self.bundle.chat
        what = "spiking" if getattr(self.bundle.model, "spiking", False) else "non-spiking"
        size = f"{self.bundle.params / 1e6:.2f} M parameters"
        trained = chat.get("trained_on") or (m.get("metrics") or {}).get("dataset", "unknown data")
        lines = [f"{m['zoo']['name']} ({what}, {size}), trained on {trained}."]
        if not chat.get("instruction_tuned"):
            if self.dialogue:
                lines.append("It is not instruction-tuned: a small model trained on example dialogues, so expect "
                             "canned phrases and made-up details (venues, times, prices), not knowledge or reasoning.")
            else:
                lines.append("It is not a chat model and not instruction-tuned: it continues the text you type.")
        return " ".join(lines)

    # -- the conversation ------------------------------------------------------------------------
    def encode_message(self, text: str) -> list[int]:
        text = text.strip()
        if not text:
            raise UserError("the message is empty", hint="type some text")
        if len(text) > MAX_MESSAGE_CHARS:
            raise UserError(f"the message is {len(text):,} characters; the most is {MAX_MESSAGE_CHARS:,}")
        if self.dialogue and self.template:
            text = user_turn(text, self.template)
        return self.bundle.tokenizer.encode(text).ids

    def reply(self, text: str) -> Iterator[str]:
        """Feed the message and stream the reply's text pieces; stats land in `last_stats`."""
        ids = self.encode_message(text)
        self.generator.feed(ids)
        stats = ReplyStats(prompt_tokens=len(ids))
        self.last_stats = stats
        pieces: list[str] = []
        for piece in self.generator.stream(self.sampling, stats):
            pieces.append(piece)
            yield piece
        if self.dialogue and self.template and stats.stop != "stop_token":
            self.generator.feed(self.bundle.tokenizer.encode(self.template["turn_end"]).ids)  # close the turn
        reply = "".join(pieces)
        self.turns += [{"role": "user", "text": text.strip()},
                       {"role": "assistant", "text": reply.strip() if self.dialogue else reply,
                        "stats": stats.as_dict()}]

    def ask(self, text: str) -> tuple[str, ReplyStats]:
        """The whole reply at once (scripts)."""
        reply = "".join(self.reply(text))
        assert self.last_stats is not None
        return (reply.strip() if self.dialogue else reply), self.last_stats

    def reset(self) -> None:
        self.generator.reset()
        self.turns.clear()
        self.last_stats = None

    def save(self, path: Path) -> Path:
        """Write the conversation, settings and per-reply stats as JSON."""
        path = Path(path).expanduser()
        if not path.parent.is_dir():
            raise UserError("folder does not exist", where=str(path.parent), hint="give a path in an existing folder")
        data = {"model": str(self.bundle.path), "sampling": asdict(self.sampling), "turns": self.turns}
        try:
            write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
        except OSError as err:
            raise UserError(f"cannot write: {err.strerror}", where=str(path)) from None
        return path

    def totals(self) -> dict[str, Any]:
        replies = [t["stats"] for t in self.turns if t["role"] == "assistant"]
        tokens = sum(r["tokens"] for r in replies)
        seconds = sum(r["seconds"] for r in replies)
        out: dict[str, Any] = {"replies": len(replies), "tokens": tokens,
                               "tokens_per_s": tokens / seconds if seconds else 0.0,
                               "context_tokens": self.generator.context}
        spikes = [r["spikes_per_token"] * r["tokens"] for r in replies if r["spikes_per_token"] is not None]
        if spikes and tokens:
            out["spikes_per_token"] = sum(spikes) / tokens
        return out
