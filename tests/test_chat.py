"""`snnctl chat`: the script contract (--prompt, stdin, --json, exit codes), the default model, and
the Textual UI driven with `App.run_test()`."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from snnctl.config import load_recipe
from snnctl.lm.bundle import load_lm
from snnctl.lm.generate import Sampling
from snnctl.lm.session import ChatSession
from snnctl.lm.tui import ChatApp, HistoryInput, Message
from snnctl.training.trainer import train
from tests.conftest import error_lines
from tests.test_lm import TINY_SSM


@pytest.fixture(scope="module")
def chat_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(load_recipe("chat-ssm", TINY_SSM), tmp_path_factory.mktemp("chat") / "bundle").out


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch):
    def feed(text: str) -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))

    return feed


def one_line_error(result, needle: str) -> None:
    assert result.code == 2, result.err
    lines = error_lines(result.err)
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.err, result.err


# -- scripts --------------------------------------------------------------------------------------

def test_prompt_json_gives_reply_and_stats(cli, chat_bundle: Path, stdin) -> None:
    stdin("")
    args = ("chat", chat_bundle, "--prompt", "Hello", "--json", "--seed", "1", "--max-tokens", "12")
    first = cli(*args)
    assert first.code == 0, first.err
    data = json.loads(first.out)
    assert isinstance(data["reply"], str) and data["stats"]["tokens"] >= 1
    assert data["stats"]["spikes_per_token"] is not None and "not instruction-tuned" in data["notice"]
    assert data["stats"]["energy_nj_per_token"]["compute_nj"] > 0
    assert json.loads(cli(*args).out)["reply"] == data["reply"]  # seeded: the same reply


def test_text_on_stdin_is_the_prompt(cli, chat_bundle: Path, stdin) -> None:
    stdin("Hello there\n")
    result = cli("chat", chat_bundle, "--max-tokens", "8", "--seed", "0")
    assert result.code == 0, result.err
    assert "not instruction-tuned" in result.err and result.out.endswith("\n")


def test_bad_input_is_one_line_and_exit_2(cli, chat_bundle: Path, trained: dict[str, Path], stdin,
                                          tmp_path: Path) -> None:
    stdin("")
    one_line_error(cli("chat", chat_bundle, "--prompt", "   "), "prompt is empty")
    one_line_error(cli("chat", chat_bundle), "prompt is empty")  # empty stdin
    one_line_error(cli("chat", trained["snn"], "--prompt", "hi"), "not a language model")
    one_line_error(cli("chat", tmp_path / "nope", "--prompt", "hi"), "bundle not found")
    one_line_error(cli("chat", chat_bundle, "--prompt", "hi", "--top-p", "0"), "top-p")
    one_line_error(cli("chat", chat_bundle, "--prompt", "x" * 20_001), "characters")
    broken = tmp_path / "broken"
    shutil.copytree(chat_bundle, broken)
    (broken / "tokenizer.json").write_text("{}")
    one_line_error(cli("chat", broken, "--prompt", "hi"), "tokenizer")


def test_no_bundle_uses_the_cached_default_model(cli, chat_bundle: Path, stdin, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNNCTL_HOME", str(tmp_path / "home"))
    shutil.copytree(chat_bundle, tmp_path / "home" / "cache" / "chat-ssm")
    stdin("")
    result = cli("chat", "--prompt", "Hi", "--json", "--max-tokens", "5")
    assert result.code == 0, result.err
    assert json.loads(result.out)["model"] == str(tmp_path / "home" / "cache" / "chat-ssm")


def test_default_model_is_trained_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from snnctl.lm import default

    monkeypatch.setenv("SNNCTL_HOME", str(tmp_path / "home"))
    path = default.ensure_default(TINY_SSM)
    assert path == tmp_path / "home" / "cache" / "chat-ssm"
    bundle = load_lm(path)
    assert bundle.manifest["recipe"]["name"] == "chat-ssm" and bundle.chat["mode"] == "dialogue"
    assert not (path / "checkpoints").exists() and not any(p.name.startswith(".") for p in path.parent.iterdir())
    stamp = (path / "snnctl.json").stat().st_mtime_ns
    assert default.ensure_default(TINY_SSM) == path and (path / "snnctl.json").stat().st_mtime_ns == stamp


def test_help_lists_chat(cli) -> None:
    result = cli("chat", "--help")
    assert result.code == 0 and "--prompt" in result.out and "default chat model" in result.out


# -- the Textual UI -------------------------------------------------------------------------------

def messages(app: ChatApp, role: str) -> list[str]:
    return [m.text for m in app.query(Message) if m.role == role]


async def send(app: ChatApp, pilot, text: str) -> None:
    prompt = app.query_one("#prompt", HistoryInput)
    prompt.focus()
    await pilot.pause()
    for key in text:
        await pilot.press(key if key != " " else "space")
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


def run(app: ChatApp, scenario) -> None:
    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await scenario(pilot)

    asyncio.run(main())


def test_tui_streams_a_reply_and_shows_stats(chat_bundle: Path) -> None:
    app = ChatApp(ChatSession(load_lm(chat_bundle), Sampling(max_tokens=20, seed=0, top_k=0, top_p=1,
                                                             temperature=1.0)))

    async def scenario(pilot) -> None:
        assert any("not instruction-tuned" in t for t in messages(app, "system"))
        await send(app, pilot, "Hello")
        assert messages(app, "user") == ["Hello"]
        reply = messages(app, "assistant")[0]
        assert reply and app.pieces_streamed >= 2  # shown piece by piece, not at the end
        assert reply == app.session.turns[1]["text"] or reply.strip() == app.session.turns[1]["text"]
        assert any("tok/s" in t and "spikes/token" in t for t in messages(app, "system"))
        assert app.query_one("#prompt", HistoryInput).value == ""

    run(app, scenario)


def test_tui_slash_commands(chat_bundle: Path, tmp_path: Path) -> None:
    app = ChatApp(ChatSession(load_lm(chat_bundle), Sampling(max_tokens=8, seed=0)))
    target = tmp_path / "conversation.json"

    async def scenario(pilot) -> None:
        await send(app, pilot, "/help")
        assert any("/save FILE" in t for t in messages(app, "system"))
        await send(app, pilot, "Hi")
        await send(app, pilot, "/stats")
        assert any("replies 1" in t for t in messages(app, "system"))
        await send(app, pilot, f"/save {target}")
        assert json.loads(target.read_text())["turns"][0]["text"] == "Hi"
        await send(app, pilot, "/save")
        assert any("needs a file name" in t for t in messages(app, "error"))
        await send(app, pilot, "/bogus")
        assert any("unknown command /bogus" in t for t in messages(app, "error"))
        await send(app, pilot, "/reset")
        assert app.session.turns == [] and messages(app, "user") == []
        assert any("reset" in t for t in messages(app, "system"))

    run(app, scenario)


def test_tui_settings_and_history(chat_bundle: Path) -> None:
    app = ChatApp(ChatSession(load_lm(chat_bundle), Sampling(max_tokens=5, seed=0)))

    async def scenario(pilot) -> None:
        field = app.query_one("#set-temperature")
        field.value = "abc"
        await field.action_submit()
        await pilot.pause()
        assert any("not a float" in t for t in messages(app, "error"))
        field.value = "-2"
        await field.action_submit()
        await pilot.pause()
        assert any("temperature" in t for t in messages(app, "error")) and app.session.sampling.temperature == 0.8
        field.value = "0"
        await field.action_submit()
        await pilot.pause()
        assert app.session.sampling.temperature == 0.0
        await send(app, pilot, "first")
        await send(app, pilot, "second")
        prompt = app.query_one("#prompt", HistoryInput)
        prompt.focus()
        await pilot.press("up")
        assert prompt.value == "second"
        await pilot.press("up")
        assert prompt.value == "first"
        await pilot.press("down", "down")
        assert prompt.value == ""
        await pilot.press("enter")  # an empty message is ignored, nothing crashes
        await pilot.pause()
        assert messages(app, "user") == ["first", "second"]

    run(app, scenario)


def test_a_default_model_cached_from_other_data_is_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             chat_bundle: Path) -> None:
    from snnctl.lm import default

    monkeypatch.setenv("SNNCTL_HOME", str(tmp_path / "home"))
    cached = tmp_path / "home" / "cache" / "chat-ssm"
    shutil.copytree(chat_bundle, cached)
    manifest = json.loads((cached / "snnctl.json").read_text())
    manifest["recipe"]["data"]["name"] = "chatterbot"  # as an older snnctl's default was trained
    (cached / "snnctl.json").write_text(json.dumps(manifest))
    path = default.ensure_default(TINY_SSM)
    assert load_lm(path).manifest["recipe"]["data"]["name"] == "sgd"
