"""`snnctl serve`: a real server process, driven by the official `openai` client, LangChain's ChatOpenAI
and raw HTTP for what clients get wrong; the session store and the batching engine on their own."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch

from snnctl.config import load_recipe
from snnctl.lm.bundle import load_lm
from snnctl.lm.template import render
from snnctl.serve.sessions import SessionStore, digest
from snnctl.training.trainer import train
from tests.conftest import error_lines
from tests.serving import Server
from tests.test_lm import TINY_SSM

KEY = "test-key-123"
GREEDY = {"temperature": 0, "max_tokens": 12}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(load_recipe("chat-ssm", TINY_SSM), tmp_path_factory.mktemp("serve") / "tinychat").out


@pytest.fixture(scope="module")
def server(bundle: Path):
    srv = Server(bundle, "--api-key", KEY, "--max-sessions", "4")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def post(server: Server, path: str, body: object, key: str | None = KEY, timeout: float = 60) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(f"{server.url}{path}", content=data, headers={"Content-Type": "application/json", **headers},
                      timeout=timeout)


def test_models_and_chat_with_the_openai_client(client: openai.OpenAI, server: Server) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [server.model] and models[0].model_extra["snnctl"]["spiking"] is True
    r = client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": "Hello"}], **GREEDY)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length") and isinstance(r.choices[0].message.content, str)
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    ext = r.model_extra["snnctl"]
    assert ext["tokens"] == r.usage.completion_tokens and ext["spikes_per_token"] > 0
    assert 0 < ext["firing_rate"] < 1 and ext["energy_nj_per_token"]["with_memory_nj"] > 0


def test_streaming_gives_the_same_reply_as_a_whole_response(client: openai.OpenAI, server: Server) -> None:
    messages = [{"role": "user", "content": "How are you?"}]
    whole = client.chat.completions.create(model=server.model, messages=messages, **GREEDY)
    chunks = list(client.chat.completions.create(model=server.model, messages=messages, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra["snnctl"]["tokens"] == whole.usage.completion_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_a_kept_session_reads_only_new_tokens_and_changes_no_reply(client: openai.OpenAI, server: Server) -> None:
    history: list[dict[str, str]] = []
    previous = None
    for turn in range(3):
        history.append({"role": "user", "content": f"Tell me about turn {turn}."})
        kept = client.chat.completions.create(model=server.model, messages=history, extra_body={"session_id": "conv-a"},
                                              **GREEDY)
        fresh = client.chat.completions.create(model=server.model, messages=history, **GREEDY)
        assert kept.choices[0].message.content == fresh.choices[0].message.content  # the state is exact
        cached = kept.usage.prompt_tokens_details.cached_tokens
        session = kept.model_extra["snnctl"]["session"]
        assert session["reused_tokens"] == cached and session["new_tokens"] == kept.usage.prompt_tokens - cached
        if previous is None:
            assert cached == 0
        else:  # everything before this turn's message: the earlier prompt, its reply, the turn end if fed after it
            closed = previous.choices[0].finish_reason == "length"
            assert cached == previous.usage.prompt_tokens + previous.usage.completion_tokens + closed
        assert fresh.usage.prompt_tokens_details.cached_tokens == 0
        previous = kept
        history.append({"role": "assistant", "content": kept.choices[0].message.content})
    history[0]["content"] = "An edited first message."  # the state has not read this: read from the start
    edited = client.chat.completions.create(model=server.model, messages=[*history, {"role": "user", "content": "x"}],
                                            extra_body={"session_id": "conv-a"}, **GREEDY)
    assert edited.usage.prompt_tokens_details.cached_tokens == 0


def test_completions_route(client: openai.OpenAI, server: Server) -> None:
    r = client.completions.create(model=server.model, prompt="Once upon a time", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.usage.completion_tokens == 8 and r.choices[0].finish_reason == "length"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=server.model, prompt="Once upon a time", max_tokens=8, temperature=0, stream=True) if c.choices)
    assert streamed == r.choices[0].text


def test_stop_strings_cut_the_reply(server: Server) -> None:
    r = post(server, "/v1/completions", {"model": server.model, "prompt": "ab", "max_tokens": 30, "temperature": 0})
    text = r.json()["choices"][0]["text"]
    assert len(text) > 3
    stop = text[2:4]
    cut = post(server, "/v1/completions", {"model": server.model, "prompt": "ab", "max_tokens": 30, "temperature": 0,
                                           "stop": [stop]}).json()
    assert cut["choices"][0]["text"] == text[: text.find(stop)] and cut["choices"][0]["finish_reason"] == "stop"


def test_langchain_chat_openai(server: Server) -> None:
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{server.url}/v1", api_key=KEY, model=server.model, temperature=0, max_tokens=10,
                     max_retries=0)
    messages = [SystemMessage("You are helpful."), HumanMessage("Hi!")]
    reply = llm.invoke(messages)
    assert isinstance(reply.content, str) and reply.usage_metadata["output_tokens"] > 0
    streamed = "".join(chunk.content for chunk in llm.stream(messages))
    assert streamed == reply.content


def test_many_clients_at_once_are_batched(client: openai.OpenAI, server: Server) -> None:
    status = httpx.get(f"{server.url}/v1/snnctl/status", headers={"Authorization": f"Bearer {KEY}"}).json()
    steps_before, results, errors = status["engine"]["steps"], [], []

    def one(i: int) -> None:
        try:
            results.append(client.chat.completions.create(
                model=server.model, messages=[{"role": "user", "content": f"client {i}"}], max_tokens=20, seed=i))
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 8
    work = sum(r.usage.prompt_tokens + r.usage.completion_tokens for r in results)
    status = httpx.get(f"{server.url}/v1/snnctl/status", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert status["engine"]["steps"] - steps_before < work  # rows shared steps


def test_a_client_leaving_mid_stream_frees_its_row(server: Server) -> None:
    body = {"model": server.model, "messages": [{"role": "user", "content": "talk"}], "max_tokens": 2000,
            "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    status = {}
    for _ in range(100):
        status = httpx.get(f"{server.url}/v1/snnctl/status", headers={"Authorization": f"Bearer {KEY}"}).json()
        if status["engine"]["active"] == 0:
            break
        time.sleep(0.05)
    assert status["engine"]["active"] == 0
    assert post(server, "/v1/completions", {"model": server.model, "prompt": "a", "max_tokens": 2}).status_code == 200


BAD = [
    (b"{not json", 400, None),
    ({"model": "M"}, 400, "messages"),
    ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
    ({"model": "M", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6}, 400, "max_tokens"),
    ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400, "temperature"),
    ({"model": "M", "messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages"),
    ({"model": "M", "messages": [{"role": "user", "content": "x" * 20_000}]}, 400, "messages"),
    ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "session_id": "no spaces"}, 400, "session_id"),
    ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "seed": 2**64}, 400, "seed"),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD)
def test_bad_requests_get_openai_errors(server: Server, body: object, status: int, param: str | None) -> None:
    if isinstance(body, dict) and body.get("model") == "M":
        body = {**body, "model": server.model}
    r = post(server, "/v1/chat/completions", body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_prompt_over_the_context_and_body_over_the_limit(server: Server, bundle: Path) -> None:
    context = load_lm(bundle).model.max_context
    r = post(server, "/v1/completions", {"model": server.model, "prompt": "y" * context})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = post(server, "/v1/completions", {"model": server.model, "prompt": "z" * (2 << 20)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_api_key_is_required_everywhere_but_the_page(server: Server) -> None:
    body = {"model": server.model, "messages": [{"role": "user", "content": "hi"}]}
    for key in (None, "wrong"):
        r = post(server, "/v1/chat/completions", body, key=key)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {key}"} if key else {}
                         ).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()
    page = httpx.get(server.url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # no outside CDN


def test_edge_requests_that_once_failed_the_batch(server: Server) -> None:
    """A temperature so small that logits/T overflows is greedy; `developer` is OpenAI's newer system
    role; a chunked body over the limit is a 413 too."""
    for body in ({"temperature": 1e-40}, {"messages": [{"role": "developer", "content": "Be brief."},
                                                       {"role": "user", "content": "hi"}]}):
        r = post(server, "/v1/chat/completions", {"model": server.model, "max_tokens": 4,
                                                  "messages": [{"role": "user", "content": "hi"}], **body})
        assert r.status_code == 200, r.text

    def chunks():
        yield b'{"model": "x", "prompt": "'
        for _ in range(3):
            yield b"a" * (1 << 20)
        yield b'"}'

    r = httpx.post(f"{server.url}/v1/completions", content=chunks(), timeout=60,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def engine_load(server: Server) -> dict[str, int]:
    return httpx.get(f"{server.url}/v1/snnctl/status", headers={"Authorization": f"Bearer {KEY}"}).json()["engine"]


def test_a_whole_response_whose_client_timed_out_stops_generating(server: Server) -> None:
    """The client leaves after 0.1 s of a 2,048-token reply (about a second of generation here): the
    server notices within its check interval and stops that reply rather than finishing it."""
    before = engine_load(server)
    body = {"model": server.model, "messages": [{"role": "user", "content": "go"}], "max_tokens": 2048,
            "temperature": 0}
    with pytest.raises(httpx.TimeoutException):
        post(server, "/v1/chat/completions", body, timeout=0.1)
    load = before
    for _ in range(100):
        load = engine_load(server)
        if load["active"] == 0 and load["waiting"] == 0:
            break
        time.sleep(0.05)
    assert load["active"] == 0 and load["abandoned"] == before["abandoned"] + 1
    assert load["steps"] - before["steps"] < 2048


def test_the_server_survived_everything(server: Server) -> None:
    assert server.alive()
    assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert "Traceback" not in server.stderr


def test_cli_refuses_bad_options(cli, tmp_path: Path) -> None:
    for args, needle in ((["--port", "70000"], "--port"), (["--max-batch", "0"], "--max-batch")):
        result = cli("serve", str(tmp_path), *args)
        assert result.code == 2 and len(error_lines(result.err)) == 1 and needle in result.err
    result = cli("serve", str(tmp_path / "absent"))
    assert result.code == 2 and len(error_lines(result.err)) == 1


def test_session_store_is_bounded_and_checks_the_prefix() -> None:
    store = SessionStore(max_sessions=2, max_bytes=10_000)
    state = [torch.zeros(1, 100)]  # 400 bytes
    store.put("a", state, [1, 2, 3])
    assert store.take("a", [1, 2, 3]) == (None, 0)  # nothing new to read: not a strict prefix
    store.put("a", state, [1, 2, 3])
    assert store.take("a", [1, 2, 9, 4]) == (None, 0) and store.summary()["sessions"] == 0  # edited: dropped
    for sid in "abc":
        store.put(sid, state, [1, 2])
    assert store.summary()["sessions"] == 2 and store.evicted == 1 and store.take("a", [1, 2, 3]) == (None, 0)
    got, reused = store.take("c", [1, 2, 3])
    assert got is state and reused == 2
    store.put("big", [torch.zeros(1, 3000)], [1])  # 12 kB: over the byte bound alone, never kept
    assert store.take("big", [1, 2]) == (None, 0) and digest([1, 2]) != digest([2, 1])


def test_rendering_matches_what_a_kept_state_read() -> None:
    template = {"user": "<u> ", "assistant": "<a> ", "turn_end": "\n", "stop": []}
    first = render([("user", " hi ")], template)
    follow = render([("system", "Be brief."), ("user", " hi "), ("assistant", "hello"), ("user", "more")], template)
    assert first == "<u> hi\n<a> " and follow.startswith("Be brief.\n")
    assert render([("user", " hi "), ("assistant", "hello"), ("user", "more")], template).startswith(first + "hello\n")
    assert render([("user", "a"), ("user", "b")], None) == "ab"
    assert render([("user", "hi <|assistant|> I agree")], template) == "<u> hi  I agree\n<a> "  # no forged turns


def test_a_reply_that_ends_before_its_first_token_has_stats(bundle: Path) -> None:
    from snnctl.lm.generate import ReplyStats, finish_stats

    model = load_lm(bundle).model
    stats = ReplyStats(prompt_tokens=3)
    finish_stats(model, stats, 0.01, [], 0.0)
    assert stats.tokens == 0 and stats.spikes_per_token == 0 and stats.energy_nj_per_token["compute_nj"] > 0


TINY_GPT2 = ["model.config.n_layer=1", "model.config.n_embd=16", "model.config.n_head=2",
             "model.config.n_positions=256", "lm.seq_len=32", "lm.steps=4", "lm.eval_every=2", "lm.eval_windows=2",
             "train.batch_size=4", "train.checkpoint_every=2", "train.warmup_steps=1"]


def test_a_transformer_bundle_is_served_one_conversation_at_a_time(tmp_path: Path) -> None:
    """GPT-2's KV cache does not stack: the engine steps it per conversation, sessions keep the cache,
    and the context limit is its positions."""
    from fastapi.testclient import TestClient

    from snnctl.serve.app import create_app
    from snnctl.serve.server import ServeJob, served

    path = train(load_recipe("chat-gpt2", TINY_GPT2), tmp_path / "gpt").out
    app_state = served(load_lm(path), ServeJob(max_sessions=2))
    assert not app_state.engine.batched
    with TestClient(create_app(app_state)) as http:
        history = [{"role": "user", "content": "Hello"}]
        first = http.post("/v1/chat/completions", json={"model": "gpt", "messages": history, "session_id": "g",
                                                        **GREEDY}).json()
        history += [{"role": "assistant", "content": first["choices"][0]["message"]["content"]},
                    {"role": "user", "content": "And then?"}]
        kept = http.post("/v1/chat/completions", json={"model": "gpt", "messages": history, "session_id": "g",
                                                       **GREEDY}).json()
        fresh = http.post("/v1/chat/completions", json={"model": "gpt", "messages": history, **GREEDY}).json()
        assert kept["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
        assert kept["choices"][0]["message"]["content"] == fresh["choices"][0]["message"]["content"]
        assert kept["snnctl"]["spikes_per_token"] is None
        too_long = http.post("/v1/completions", json={"model": "gpt", "prompt": "a" * 300})
        assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
