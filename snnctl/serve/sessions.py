"""Kept conversation states: what lets a follow-up turn cost only its new tokens.

A spiking SSM's whole conversation lives in a fixed-size state, so the server can keep it between
requests instead of re-reading the history. A request names its session; the server renders the
request's full message history to tokens, and if the tokens the kept state has read are exactly the
start of them (checked by a SHA-256 digest, so the store keeps no text), only the rest is read. An
edited history, or one the state has not read, is read from the start: a kept state is an
optimisation that never changes a reply. Sessions are bounded in number and bytes, least recently
used evicted first. Only the engine thread touches the store: no locks.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


def digest(ids: Sequence[int]) -> bytes:
    return hashlib.sha256(array("q", ids).tobytes()).digest()


def state_bytes(state: Any, _depth: int = 0) -> int:
    """Bytes of every tensor in a model state (nested lists/tuples, or a cache object's attributes)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if _depth > 6:
        return 0
    if isinstance(state, list | tuple):
        return sum(state_bytes(s, _depth + 1) for s in state)
    if isinstance(state, dict):
        return sum(state_bytes(s, _depth + 1) for s in state.values())
    if hasattr(state, "__dict__"):
        return sum(state_bytes(s, _depth + 1) for s in vars(state).values())
    return 0


@dataclass
class Kept:
    state: Any
    digest: bytes  # of the tokens the state has read
    length: int
    nbytes: int


class SessionStore:
    def __init__(self, max_sessions: int, max_bytes: int) -> None:
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self._kept: OrderedDict[str, Kept] = OrderedDict()
        self.bytes = 0
        self.evicted = 0

    def take(self, sid: str, ids: Sequence[int]) -> tuple[Any, int]:
        """Check the session out: (its state, tokens of `ids` it has already read), or (None, 0) when
        it is unknown or its tokens are not a strict prefix of `ids` (then it is dropped)."""
        kept = self._kept.pop(sid, None)
        if kept is None:
            return None, 0
        self.bytes -= kept.nbytes
        if kept.length < len(ids) and digest(ids[:kept.length]) == kept.digest:
            return kept.state, kept.length
        return None, 0

    def put(self, sid: str, state: Any, fed: Sequence[int]) -> None:
        """Keep a state that has read `fed`, evicting the least recently used beyond the bounds."""
        kept = Kept(state, digest(fed), len(fed), state_bytes(state))
        if kept.nbytes > self.max_bytes:
            return
        self._kept[sid] = kept
        self.bytes += kept.nbytes
        while len(self._kept) > self.max_sessions or self.bytes > self.max_bytes:
            _, old = self._kept.popitem(last=False)
            self.bytes -= old.nbytes
            self.evicted += 1

    def summary(self) -> dict[str, int]:
        return {"sessions": len(self._kept), "bytes": self.bytes, "max_sessions": self.max_sessions,
                "max_bytes": self.max_bytes, "evicted": self.evicted}
