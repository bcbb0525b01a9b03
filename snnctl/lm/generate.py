"""Token-by-token generation on the recurrent state, with sampling and per-reply statistics.

The state (SSM modes and membranes, or a transformer's KV cache) is carried from token to token, so
a spiking SSM spends the same work on every new token however long the context is. Statistics per
reply: tokens/s, spikes per token and firing rate over the spiking sites, and an energy estimate
(45 nm constants, printed with it; an estimate, not a measurement).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from snnctl.errors import UserError
from snnctl.lm.tokenizer import StreamDecoder
from snnctl.metrics import energy

GREEDY_BELOW = 1e-4


@dataclass
class Sampling:
    """temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    max_tokens: int = 200
    seed: int | None = None

    def check(self) -> Sampling:
        if not 0 <= self.temperature <= 10:
            raise UserError(f"temperature {self.temperature} is outside [0, 10]", hint="0 is greedy; 0.7-1 is usual")
        if self.top_k < 0:
            raise UserError(f"top-k {self.top_k} is negative", hint="0 switches top-k off")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top-p {self.top_p} is outside (0, 1]", hint="1 switches top-p off")
        if not 1 <= self.max_tokens <= 100_000:
            raise UserError(f"max tokens {self.max_tokens} is outside [1, 100000]")
        return self


def pick(logits: Tensor, s: Sampling, generator: torch.Generator | None) -> int:
    """One token id from the logits of one position, under the sampling settings."""
    if s.temperature < GREEDY_BELOW:  # logits / 1e-40 overflow to inf: such a temperature is greedy anyway
        return int(logits.argmax())
    scores = logits.float() / s.temperature
    if 0 < s.top_k < scores.numel():
        kth = torch.topk(scores, s.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if s.top_p < 1:
        sorted_scores, order = torch.sort(scores, descending=True)
        probs = torch.softmax(sorted_scores, -1)
        outside = probs.cumsum(-1) - probs > s.top_p  # keep the smallest set whose mass reaches top_p
        scores = scores.scatter(0, order[outside], float("-inf"))
    return int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))


@dataclass
class ReplyStats:
    prompt_tokens: int = 0
    tokens: int = 0
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    spikes_per_token: float | None = None
    firing_rate: float | None = None
    energy_nj_per_token: dict[str, float] = field(default_factory=dict)
    context_tokens: int = 0
    stop: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator:
    """Holds one model's running state; `feed` adds tokens to it, `stream` samples a continuation."""

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, stop_ids: tuple[int, ...] = ()) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_ids)
        self.max_context: int = int(getattr(model, "max_context", 1 << 30))
        self.reset()

    def reset(self) -> None:
        """A fresh state: nothing of earlier text is remembered."""
        self.state = self.model.start(1)
        self.context = 0
        self.logits: Tensor | None = None

    def room(self) -> int:
        """Tokens the model can still take: a KV cache fills up; a recurrent state does not, so
        there `max_context` bounds one text at a time."""
        used = self.context if getattr(self.model, "state_grows", False) else 0
        return self.max_context - used

    @torch.no_grad()
    def feed(self, ids: list[int]) -> None:
        if not ids:
            return
        if len(ids) > self.room():
            raise UserError(f"the text is {len(ids)} tokens but the model has room for {self.room()} more "
                            f"(context {self.max_context})", hint="shorten it, or /reset to start over")
        logits, self.state = self.model.prefill(torch.tensor([ids]), self.state)
        self.logits = logits[0]
        self.context += len(ids)

    @torch.no_grad()
    def stream(self, sampling: Sampling, stats: ReplyStats) -> Iterator[str]:
        """Yield text pieces as tokens are sampled; fills `stats` as it goes. Stops at a stop token
        (not fed back), after max_tokens, or when the context is full."""
        if self.logits is None:
            raise UserError("nothing to continue from", hint="give a prompt")
        gen = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None
        decoder = StreamDecoder(self.tokenizer)
        site_spikes: list[float] = []
        steps = 0.0
        started = time.perf_counter()
        stats.stop = "max_tokens"
        try:
            while stats.tokens < sampling.max_tokens:
                token = pick(self.logits, sampling, gen)
                if token in self.stop_ids:
                    stats.stop = "stop_token"
                    break
                if self.room() < 1:
                    stats.stop = "context_full"
                    break
                logits, self.state = self.model.step(torch.tensor([token]), self.state)
                self.logits, self.context = logits[0], self.context + 1
                stats.tokens += 1
                for i, site in enumerate(self.model.activity()):
                    if i == len(site_spikes):
                        site_spikes.append(0.0)
                    site_spikes[i] += site["spikes"]
                    steps += site["neuron_steps"]
                piece = decoder.push(token)
                if piece:
                    yield piece
            tail = decoder.flush()
            if tail:
                yield tail
        finally:  # once per reply, not per token; also when the caller stops reading early
            stats.context_tokens = self.context
            finish_stats(self.model, stats, time.perf_counter() - started, site_spikes, steps)



def finish_stats(model: nn.Module, stats: ReplyStats, seconds: float, site_spikes: list[float],
                 neuron_steps: float) -> None:
    """A reply's speed, spikes and energy estimate from its spikes per site and neuron-steps (summed
    over its tokens): once per reply, by `chat`'s generator and by the server's batched engine."""
    site_spikes = site_spikes or [0.0] * len(model.activity())  # a reply that ended before its first token
    stats.seconds = seconds
    stats.tokens_per_s = stats.tokens / seconds if seconds > 0 else 0.0
    n = max(stats.tokens, 1)
    if getattr(model, "spiking", False):
        stats.spikes_per_token = sum(site_spikes) / n
        stats.firing_rate = sum(site_spikes) / neuron_steps if neuron_steps else 0.0
    ops = model.token_ops([s / n for s in site_spikes], stats.context_tokens)
    stats.energy_nj_per_token = energy.estimate(ops["macs"], ops["sops"], neuron_steps / n)
