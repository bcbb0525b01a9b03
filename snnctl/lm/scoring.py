"""Held-out scoring of a language model: bits per byte and the firing rate of every spiking site.

Bits per byte = (cross-entropy in nats per token) / ln 2 / (UTF-8 bytes per token of the scored
text), so byte- and BPE-tokenised models compare on one scale. The text is cut into consecutive
windows of `seq_len + 1` tokens (stride `seq_len`); every token but a window's first is scored.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def windows(ids: Tensor, seq_len: int, limit: int | None = None) -> Tensor:
    """[n, seq_len + 1] consecutive windows of the token stream (the last partial one dropped)."""
    n = (len(ids) - 1) // seq_len
    if limit is not None:
        n = min(n, limit)
    if n < 1:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one window of {seq_len + 1}")
    return torch.stack([ids[i * seq_len : i * seq_len + seq_len + 1] for i in range(n)])


@torch.no_grad()
def score(model: nn.Module, ids: Tensor, seq_len: int, bytes_per_token: float, *, limit: int | None = None,
          batch_size: int = 16) -> dict[str, Any]:
    """Cross-entropy, bits per byte and per-layer firing rates over held-out `ids`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    data = windows(ids, seq_len, limit)
    nats, tokens = 0.0, 0
    spikes: list[float] = []
    steps: list[float] = []
    for start in range(0, len(data), batch_size):
        chunk = data[start : start + batch_size].to(device)
        logits = model(chunk[:, :-1])
        nats += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum"))
        tokens += chunk[:, 1:].numel()
        for i, site in enumerate(model.activity()):
            if i >= len(spikes):
                spikes.append(0.0)
                steps.append(0.0)
            spikes[i] += site["spikes"]
            steps[i] += site["neuron_steps"]
    model.train(was_training)
    loss = nats / tokens
    result: dict[str, Any] = {"loss": loss, "bpb": loss / math.log(2) / bytes_per_token, "tokens": tokens}
    if getattr(model, "spiking", False) and steps:
        rates = [s / max(n, 1) for s, n in zip(spikes, steps, strict=True)]
        result["firing_rates"] = [round(r, 4) for r in rates]
        result["firing_rate"] = sum(spikes) / max(sum(steps), 1)
        result["spikes_per_token"] = sum(spikes) / max(sum(steps), 1) * sum(steps) / max(tokens, 1)
    return result


def bytes_per_token(text: str, n_tokens: int) -> float:
    return len(text.encode("utf-8")) / max(n_tokens, 1)
