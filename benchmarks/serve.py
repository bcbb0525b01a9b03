"""`snnctl serve` benchmark: a real server process under load from real HTTP clients, on this machine.

1. Load: `--clients` (32) concurrent clients for `--seconds` (60), each sending streamed chat requests
   (a short user message, `--max-tokens` 64, temperature 0.8) one after another: requests completed,
   errors, time to first token (p50/p95, from sending the request to the first content chunk), tokens
   per second per stream (after its first token) and in total. The clients are asyncio + httpx in
   this process, on the same 2 cores as the server: they take some of its CPU.
2. Follow-up cost at 10 turns: one conversation of 10 user turns (replies greedy, 32 tokens), sent
   once with a kept session (`session_id`: the server reads only the new turn) and once resending the
   whole history without one (the server re-reads it, as a transformer server without a cache must);
   time to first token at every turn for both, with the server otherwise idle.
3. Memory: bytes per kept session (the server's own count of its state tensors) and the server's
   resident memory (VmRSS) before and after `--sessions` sessions are held.

    python benchmarks/serve.py --save benchmarks/results/serve.json      # the default chat model
    python benchmarks/serve.py --bundle runs/chat --seconds 10 --json     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import emit

from tests.serving import Server

MESSAGES = ["Hi, I'd like to find a restaurant.", "Somewhere in San Jose, please.", "Italian food would be great.",
            "What time do they open?", "Can you book a table for two?", "Tomorrow at 7 pm.", "Is there parking?",
            "How about a movie after dinner?", "Something funny, please.", "Thanks, that's all."]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def stream_chat(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed request: time to first content, tokens, and the server's `snnctl` figures."""
    sent = time.perf_counter()
    first: float | None = None
    final: dict[str, Any] = {}
    text: list[str] = []
    async with client.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            piece = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if piece and first is None:
                first = time.perf_counter()
            if piece:
                text.append(piece)
            if "snnctl" in chunk:
                final = chunk["snnctl"]
    done = time.perf_counter()
    return {"ttft": (first or done) - sent, "tokens": final.get("tokens", 0), "stream_s": done - (first or done),
            "text": "".join(text), "snnctl": final}


async def load(url: str, model: str, clients: int, seconds: float, max_tokens: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients + 4)

    async def client_loop(i: int, client: httpx.AsyncClient) -> None:
        n = 0
        while time.perf_counter() < deadline:
            body = {"model": model, "messages": [{"role": "user", "content": MESSAGES[(i + n) % len(MESSAGES)]}],
                    "max_tokens": max_tokens, "temperature": 0.8, "seed": i * 1000 + n}
            try:
                results.append(await stream_chat(client, url, body))
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}"[:200])
            n += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await asyncio.gather(*(client_loop(i, client) for i in range(clients)))
    wall = time.perf_counter() - started
    ttfts = [r["ttft"] for r in results]
    per_stream = [r["tokens"] / r["stream_s"] for r in results if r["stream_s"] > 0 and r["tokens"] > 1]
    tokens = sum(r["tokens"] for r in results)
    return {"clients": clients, "seconds": seconds, "wall_s": round(wall, 1), "max_tokens": max_tokens,
            "requests": len(results), "errors": len(errors), "error_samples": errors[:5],
            "ttft_p50_s": percentile(ttfts, 0.5), "ttft_p95_s": percentile(ttfts, 0.95),
            "stream_tokens_per_s_p50": percentile(per_stream, 0.5), "total_tokens": tokens,
            "total_tokens_per_s": round(tokens / wall, 1),
            "spikes_per_token_mean": statistics.fmean([r["snnctl"]["spikes_per_token"] for r in results
                                                       if r["snnctl"].get("spikes_per_token") is not None] or [0])}


async def conversation(url: str, model: str, kept: bool, turns: int) -> list[dict[str, Any]]:
    """One conversation, turn by turn; with `kept`, under one session id."""
    history: list[dict[str, str]] = []
    rows = []
    async with httpx.AsyncClient(timeout=300) as client:
        for turn in range(turns):
            history.append({"role": "user", "content": MESSAGES[turn % len(MESSAGES)]})
            body = {"model": model, "messages": history, "max_tokens": 32, "temperature": 0}
            if kept:
                body["session_id"] = f"bench-{time.monotonic_ns()}" if turn == 0 else rows[0]["session"]
            r = await stream_chat(client, url, body)
            session = r["snnctl"].get("session", {})
            rows.append({"turn": turn + 1, "ttft_s": round(r["ttft"], 4), "reused_tokens": session.get("reused_tokens"),
                         "new_tokens": session.get("new_tokens"), "session": session.get("id"), "text": r["text"]})
            history.append({"role": "assistant", "content": r["text"]})
    return rows


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def fill_sessions(url: str, model: str, n: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=300) as client:
        for i in range(n):
            r = await client.post(f"{url}/v1/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": f"Hello number {i}"}], "max_tokens": 1,
                "session_id": f"fill-{i}"})
            r.raise_for_status()
        return (await client.get(f"{url}/v1/snnctl/status")).json()


def follow_up(url: str, model: str, turns: int, rounds: int) -> dict[str, Any]:
    """Kept session against resending, alternating, `rounds` times; the median per turn."""
    runs: dict[str, list[list[dict[str, Any]]]] = {"kept": [], "resent": []}
    for _ in range(rounds):
        for mode in ("kept", "resent"):
            runs[mode].append(asyncio.run(conversation(url, model, mode == "kept", turns)))
    out: dict[str, Any] = {"turns": turns, "rounds": rounds, "reply_tokens": 32}
    for mode, convs in runs.items():
        out[mode] = [{"turn": t + 1, "ttft_s": round(statistics.median(c[t]["ttft_s"] for c in convs), 4),
                      "prompt_tokens_read": convs[0][t]["new_tokens"], "reused_tokens": convs[0][t]["reused_tokens"]}
                     for t in range(turns)]
    last = turns - 1
    out["same_replies"] = all(a["text"] == b["text"] for a, b in zip(runs["kept"][0], runs["resent"][0], strict=True))
    out["ttft_ratio_at_last_turn"] = round(out["resent"][last]["ttft_s"] / out["kept"][last]["ttft_s"], 2)
    out["kept_ttft_turn10_over_turn1"] = round(out["kept"][last]["ttft_s"] / out["kept"][0]["ttft_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="LM bundle (default: the default chat model, trained if needed)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--sessions", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.bundle is None:
        from snnctl.lm.default import ensure_default

        args.bundle = ensure_default()
    server = Server(args.bundle, "--max-sessions", str(args.sessions), "--max-batch", str(args.clients))
    try:
        result: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpu": platform.processor(),
                                              "cores": __import__("os").cpu_count()},
                                  "bundle": str(args.bundle), "model": server.model,
                                  "method": __doc__.split("\n\n")[1].strip(), "measured": time.strftime("%Y-%m-%d")}
        result["follow_up"] = follow_up(server.url, server.model, 10, args.rounds)
        result["load"] = asyncio.run(load(server.url, server.model, args.clients, args.seconds, args.max_tokens))
        before = rss_kb(server.proc.pid)
        status = asyncio.run(fill_sessions(server.url, server.model, args.sessions))
        sessions = status["sessions"]
        result["memory"] = {"sessions_held": sessions["sessions"], "bytes_per_session": sessions["bytes"] //
                            max(sessions["sessions"], 1), "rss_mb_before_fill": round(before / 1024, 1),
                            "rss_mb_with_sessions": round(rss_kb(server.proc.pid) / 1024, 1)}
        result["server_alive"] = server.alive()
    finally:
        server.stop()
    if not emit(result, args.save, args.json):
        print(json.dumps({k: result[k] for k in ("load", "memory")}, indent=2))
        print(json.dumps({k: v for k, v in result["follow_up"].items() if k not in ("kept", "resent")}, indent=2))


if __name__ == "__main__":
    main()
