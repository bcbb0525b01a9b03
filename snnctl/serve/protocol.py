"""The OpenAI API's request and response shapes, as far as `snnctl serve` speaks them.

Requests are validated by pydantic; anything wrong becomes an OpenAI-style error body with a 4xx
status (`APIError`), never a traceback. Extensions beyond OpenAI's fields: `session_id` (keep this
conversation's recurrent state between requests), `top_k`, and in responses an `snnctl` object with
the reply's spikes, firing rate and energy estimate. A kept state's reuse is also reported where
OpenAI reports prompt caching: `usage.prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from snnctl.metrics import energy

SESSION_ID = r"^[A-Za-z0-9_.:\-]{1,128}$"


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def speaker(self) -> str:
        """OpenAI's newer `developer` role is what `system` was: instructions, not a turn."""
        return "system" if self.role == "developer" else self.role

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampled(BaseModel):
    """The fields both completion routes share."""

    model_config = ConfigDict(extra="ignore")
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: int = Field(1, ge=1, le=1)
    session_id: str | None = Field(None, pattern=SESSION_ID)

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise APIError(400, "stop takes up to 4 non-empty strings", param="stop")
        return tuple(stops)

    def limit(self, default: int, most: int) -> int:
        asked = self.max_completion_tokens or self.max_tokens or default
        if asked > most:
            raise APIError(400, f"max_tokens is {asked}; this server allows at most {most}", param="max_tokens")
        return asked


class ChatRequest(Sampled):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Sampled):
    prompt: str | list[str]

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise APIError(400, "prompt must be one string (a list of exactly one is accepted)", param="prompt")
        return self.prompt[0]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int, reused: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens, "prompt_tokens_details": {"cached_tokens": reused}}


def extension(result: dict[str, Any], prompt_tokens: int, session_id: str | None) -> dict[str, Any]:
    """The `snnctl` object of a response: what the reply cost in spikes and (estimated) energy."""
    stats = result["stats"]
    return {"tokens": stats.tokens, "tokens_per_s": round(stats.tokens_per_s, 2),
            "time_to_first_token_s": result["first_token_s"], "spikes_per_token": stats.spikes_per_token,
            "firing_rate": stats.firing_rate, "energy_nj_per_token": stats.energy_nj_per_token,
            "energy_note": energy.describe()["note"],
            "session": {"id": session_id, "reused_tokens": result["reused"],
                        "new_tokens": prompt_tokens - result["reused"]}}


def envelope(kind: str, rid: str, model: str) -> dict[str, Any]:
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model}


def chat_choice(text: str, finish: str | None, delta: bool) -> dict[str, Any]:
    if delta:
        return {"index": 0, "delta": {"content": text} if text else {}, "logprobs": None, "finish_reason": finish}
    return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}


def text_choice(text: str, finish: str | None) -> dict[str, Any]:
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
