"""The server's generation engine: one thread that steps every active conversation together.

Why a thread of its own: torch work on the event loop would stall every other client while a reply is
generated. Why one: two threads stepping models at once on a small machine only fight for its cores.
Why batched: a spiking SSM's state is a fixed-size tensor per conversation, so the active
conversations stack into one batch and one step serves them all (continuous batching: a conversation
joins or leaves between any two steps). Prompt tokens and sampled tokens go through the same step,
one token per conversation per step, so a long prompt never stalls the others' replies.
A transformer's KV cache grows per conversation and does not stack; such models step each
conversation on its own, in turn, reading a prompt in one call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from snnctl.lm.generate import ReplyStats, Sampling, finish_stats, pick
from snnctl.lm.tokenizer import StreamDecoder
from snnctl.serve.sessions import SessionStore

log = logging.getLogger("snnctl.serve")

FINISH = {"stop_token": "stop", "stop": "stop", "max_tokens": "length", "context_full": "length"}


@dataclass
class Request:
    """One completion to generate. `emit(kind, data)` is called from the engine thread with
    ("text", piece), then ("done", result) or ("error", message); it must be thread-safe."""

    ids: list[int]
    sampling: Sampling
    emit: Callable[[str, Any], None]
    stops: tuple[str, ...] = ()
    session_id: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class Voice:
    """How replies end for this model: stop tokens, and for a dialogue model the text that closes a
    turn (held back while streaming, not part of the reply, fed after a reply that lacks it)."""

    stop_ids: frozenset[int]
    turn_end: str = ""
    turn_end_ids: tuple[int, ...] = ()


class Row:
    """One conversation in the batch: what it still has to read, what it has read, its reply so far."""

    def __init__(self, req: Request, state: Any, reused: int, model: nn.Module, tok: Tokenizer, voice: Voice) -> None:
        self.req, self.state, self.reused, self.model, self.voice = req, state, reused, model, voice
        self.max_context = int(getattr(model, "max_context", 1 << 30))
        self.pending: deque[int] = deque(req.ids[reused:])
        self.fed: list[int] = list(req.ids[:reused])
        self.phase = "prompt"  # then "reply", then "closing" (feeding the turn end), then done
        self.done = False
        self.keep = True  # keep the state as the session when done
        self.to_feed: int | None = None
        self.kind = "prompt"
        self.stats = ReplyStats(prompt_tokens=len(req.ids))
        self.decoder = StreamDecoder(tok)
        self.text, self.sent = "", 0
        self.site_spikes: list[float] = []
        self.neuron_steps = 0.0
        self.first_token_s: float | None = None
        self.started = time.perf_counter()
        seed = req.sampling.seed
        self.gen = torch.Generator().manual_seed(seed) if seed is not None else None
        # characters held back while streaming: a stop string's possible start, or a closing turn end
        self.hold = max([len(s) - 1 for s in req.stops] + [len(voice.turn_end)])

    def take_input(self, all_pending: bool) -> list[int]:
        """The tokens to feed this step: prompt or closing tokens, else the token sampled last."""
        if self.pending:
            self.kind = self.phase
            ids = list(self.pending) if all_pending else [self.pending.popleft()]
            if all_pending:
                self.pending.clear()
        else:
            assert self.to_feed is not None
            self.kind, ids = "reply", [self.to_feed]
        self.fed += ids
        return ids

    def after_step(self, logits: torch.Tensor, spikes: list[float], neuron_steps: float) -> None:
        if self.kind == "closing":
            self.done = not self.pending
            return
        if self.kind == "prompt" and self.pending:
            return
        if self.kind == "reply":
            self.stats.tokens += 1
            self.neuron_steps += neuron_steps
            self.site_spikes = [a + b for a, b in zip(self.site_spikes or [0.0] * len(spikes), spikes, strict=True)]
            if self.stats.tokens >= self.req.sampling.max_tokens:
                return self.finish("max_tokens")
        else:
            self.first_token_s = time.perf_counter() - self.req.submitted
            self.started = time.perf_counter()
        if len(self.fed) >= self.max_context:
            return self.finish("context_full")
        self.sample(logits)

    def sample(self, logits: torch.Tensor) -> None:
        token = pick(logits, self.req.sampling, self.gen)
        if token in self.voice.stop_ids:
            return self.finish("stop_token")
        self.phase, self.to_feed = "reply", token
        self.text += self.decoder.push(token)
        for stop in self.req.stops:
            at = self.text.find(stop)
            if at >= 0:
                self.text = self.text[:at]
                self.keep = False  # the state has read past the reply the client gets
                return self.finish("stop")
        self._send(len(self.text) - self.hold)

    def _send(self, upto: int) -> None:
        if upto > self.sent:
            self.req.emit("text", self.text[self.sent:upto])
            self.sent = upto

    def finish(self, reason: str) -> None:
        """Send the rest of the reply and the result; a dialogue turn left open is closed by feeding
        its turn end, so the kept state reads as the history the client will send back."""
        if reason != "stop":
            self.text += self.decoder.flush()
        fed_text = self.text
        end = self.voice.turn_end
        if end and self.text.endswith(end):
            self.text = self.text[: -len(end)]
        self._send(len(self.text))
        self.stats.stop = reason
        self.stats.context_tokens = len(self.fed)
        finish_stats(self.model, self.stats, time.perf_counter() - self.started, self.site_spikes,
                     self.neuron_steps)
        self.req.emit("done", {"text": self.text, "finish_reason": FINISH[reason], "stats": self.stats,
                               "reused": self.reused, "first_token_s": self.first_token_s})
        closing = self.voice.turn_end_ids
        fits = len(self.fed) + len(closing) < self.max_context  # a transformer has no positions left past it
        if self.req.session_id and self.keep and end and not fed_text.endswith(end) and closing and fits:
            self.phase = "closing"
            self.pending.extend(self.voice.turn_end_ids)
        else:
            self.done = True


def _rows_of(state: Any, index: torch.Tensor) -> Any:
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index)
    return type(state)(_rows_of(s, index) for s in state)


def _stack(states: list[Any]) -> Any:
    if isinstance(states[0], torch.Tensor):
        return torch.cat(states, 0)
    return type(states[0])(_stack(list(parts)) for parts in zip(*states, strict=True))


class Engine:
    """Owns the model and the session store; `submit` is the only call other threads make."""

    def __init__(self, model: nn.Module, tok: Tokenizer, voice: Voice, store: SessionStore,
                 max_batch: int = 32) -> None:
        self.model, self.tok, self.voice, self.store = model.eval(), tok, voice, store
        self.max_batch = max_batch
        self.batched = not getattr(model, "state_grows", False) and hasattr(model, "row_activity")
        self.inbox: queue.Queue[Request] = queue.Queue()
        self.waiting: list[Request] = []
        self.rows: list[Row] = []
        self.batch_state: Any = None
        self.steps = 0
        self.abandoned = 0  # replies stopped because their client left
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snnctl-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def submit(self, req: Request) -> None:
        self.inbox.put(req)

    def load(self) -> dict[str, int]:
        return {"active": len(self.rows), "waiting": len(self.waiting) + self.inbox.qsize(), "steps": self.steps,
                "abandoned": self.abandoned}

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._stop.is_set():
                self._admit()
                if not self.rows:
                    continue
                try:
                    self._step() if self.batched else self._step_each()
                except Exception as err:  # a bug must not take the server down: fail these replies only
                    log.exception("generation failed")
                    for row in self.rows:
                        row.req.emit("error", f"generation failed: {type(err).__name__}")
                    self.rows, self.batch_state = [], None
                    continue
                self.steps += 1
                self._retire()

    def _admit(self) -> None:
        """Move requests from the inbox into the batch, in order; one whose session is in use waits."""
        try:
            block = not self.rows and not self.waiting
            self.waiting.append(self.inbox.get(timeout=0.2) if block else self.inbox.get_nowait())
            while True:
                self.waiting.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        busy = {r.req.session_id for r in self.rows if r.req.session_id}
        still: list[Request] = []
        for req in self.waiting:
            if req.cancelled.is_set():
                self.abandoned += 1
                continue
            if len(self.rows) >= self.max_batch or (req.session_id and req.session_id in busy):
                still.append(req)
                continue
            try:
                self._join(req)
            except Exception as err:  # this request only: the others go on
                log.exception("request could not start")
                req.emit("error", f"generation failed: {type(err).__name__}")
                continue
            if req.session_id:
                busy.add(req.session_id)
        self.waiting = still

    def _join(self, req: Request) -> None:
        state, reused = self.store.take(req.session_id, req.ids) if req.session_id else (None, 0)
        row = Row(req, state if state is not None else self.model.start(1), reused, self.model, self.tok,
                  self.voice)
        self.rows.append(row)
        if self.batched:
            self.batch_state = row.state if self.batch_state is None else _stack([self.batch_state, row.state])
            row.state = None

    def _step(self) -> None:
        """One token for every row, in one batched call."""
        inputs = torch.tensor([row.take_input(False)[0] for row in self.rows])
        logits, self.batch_state = self.model.step(inputs, self.batch_state)
        spikes = self.model.row_activity()
        per_row = sum(s["neuron_steps"] for s in self.model.activity()) / len(self.rows)
        for i, row in enumerate(self.rows):
            row_spikes = spikes[:, i].tolist() if spikes is not None else []
            self._guarded(row, lambda r=row, i=i, sp=row_spikes: r.after_step(logits[i], sp, per_row))

    def _step_each(self) -> None:
        """Models whose state does not stack: each row in turn, a prompt read in one call."""
        for row in self.rows:
            self._guarded(row, lambda r=row: self._advance_alone(r))

    def _advance_alone(self, row: Row) -> None:
        ids = row.take_input(True)
        call = self.model.prefill if len(ids) > 1 else self.model.step
        logits, row.state = call(torch.tensor([ids]) if len(ids) > 1 else torch.tensor(ids), row.state)
        sites = self.model.activity()
        row.after_step(logits[0], [s["spikes"] for s in sites], sum(s["neuron_steps"] for s in sites))

    @staticmethod
    def _guarded(row: Row, work: Callable[[], None]) -> None:
        """One row's sampling or bookkeeping failing ends that reply only, not the batch's."""
        try:
            work()
        except Exception as err:
            log.exception("a reply failed")
            if not row.done:
                row.req.emit("error", f"generation failed: {type(err).__name__}")
            row.done, row.keep = True, False

    def _retire(self) -> None:
        """Rows that are done (or whose client left) leave the batch; their state becomes the session."""
        leaving = [i for i, r in enumerate(self.rows) if r.done or r.req.cancelled.is_set()]
        if not leaving:
            return
        for i in leaving:
            row = self.rows[i]
            self.abandoned += not row.done
            if not (row.req.session_id and row.keep and row.done and not row.req.cancelled.is_set()):
                continue
            state = _rows_of(self.batch_state, torch.tensor([i])) if self.batched else row.state
            self.store.put(row.req.session_id, state, row.fed)
        stay = [i for i in range(len(self.rows)) if i not in set(leaving)]
        if self.batched:
            self.batch_state = _rows_of(self.batch_state, torch.tensor(stay, dtype=torch.long)) if stay else None
        self.rows = [self.rows[i] for i in stay]
