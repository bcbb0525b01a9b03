"""Spiking language models: tokenizers, the S4D layer, the LM twins, training, generation, sessions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from snnctl.config import load_recipe
from snnctl.errors import UserError
from snnctl.lm import tokenizer as toks
from snnctl.lm.bundle import load_lm
from snnctl.lm.corpus import CHAT_TEMPLATE, load_chatterbot, render_dialogue
from snnctl.lm.generate import Generator, ReplyStats, Sampling, pick
from snnctl.lm.models import build_lm
from snnctl.lm.session import ChatSession
from snnctl.lm.ssm import S4D
from snnctl.training.trainer import train

TINY_SSM = ["model.config.d_model=32", "model.config.n_layers=2", "model.config.d_state=8", "lm.seq_len=32",
            "lm.steps=6", "lm.eval_every=3", "lm.eval_windows=2", "train.batch_size=4", "train.log_every=2",
            "train.checkpoint_every=3", "train.warmup_steps=2"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small-ssm shrunk to seconds: a real bundle on tinyshakespeare."""
    return train(load_recipe("small-ssm", TINY_SSM), tmp_path_factory.mktemp("lm") / "ssm").out


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chat-ssm shrunk: a dialogue bundle with the chat template."""
    return train(load_recipe("chat-ssm", TINY_SSM), tmp_path_factory.mktemp("lm") / "chat").out


def merges(tok) -> list:
    """A BPE tokenizer has merges; the byte tokenizer has none."""
    return json.loads(tok.to_str())["model"].get("merges") or []


# -- tokenizers -----------------------------------------------------------------------------------

def test_byte_tokenizer_maps_each_byte_to_its_value_and_keeps_specials() -> None:
    tok = toks.byte_tokenizer()
    text = "Hi é\n"
    assert tok.encode(text).ids == list(text.encode("utf-8"))
    assert tok.get_vocab_size() == 256 + len(toks.SPECIALS)
    ids = tok.encode(f"{toks.USER} a").ids
    assert ids[0] == tok.token_to_id(toks.USER) == 257
    assert tok.decode(ids, skip_special_tokens=True) == " a"


def test_stream_decoder_holds_back_half_characters() -> None:
    tok = toks.byte_tokenizer()
    decoder = toks.StreamDecoder(tok)
    pieces = [decoder.push(i) for i in "é€".encode()]
    assert pieces == ["", "é", "", "", "€"]


def test_bpe_round_trips_and_saves(tmp_path: Path) -> None:
    tok = toks.train_bpe(["the cat sat on the mat " * 50], 300)
    text = "the cat sat, naïvely"
    assert tok.decode(tok.encode(text).ids) == text
    assert len(tok.encode("the cat sat").ids) < len("the cat sat")
    (tmp_path / "t.json").write_bytes(toks.to_json(tok))
    assert toks.load(tmp_path / "t.json").get_vocab_size() == tok.get_vocab_size()
    assert merges(tok) and not merges(toks.byte_tokenizer())
    with pytest.raises(UserError, match="vocab_size"):
        toks.train_bpe(["x"], 100)


def test_broken_tokenizer_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read the tokenizer"):
        toks.load(tmp_path / "tokenizer.json")


def test_chatterbot_dialogues_render_with_the_template() -> None:
    corpus = load_chatterbot(test_fraction=0.1)
    assert corpus.chat == CHAT_TEMPLATE
    assert corpus.train.startswith(CHAT_TEMPLATE["user"])
    assert CHAT_TEMPLATE["assistant"] in corpus.train and toks.END in corpus.val
    assert render_dialogue(["Hi", "Hello"]) == "<|user|> Hi\n<|assistant|> Hello\n<|endoftext|>\n"
    val_convs = corpus.val.count(toks.END)
    assert val_convs == corpus.info["conversations_val"]


# -- the S4D layer and the models -----------------------------------------------------------------

def test_s4d_convolution_equals_recurrence() -> None:
    torch.manual_seed(0)
    layer = S4D(8, 16)
    u = torch.randn(2, 50, 8)
    y_conv = layer(u)
    state, ys = layer.initial_state(2), []
    for t in range(50):
        y, state = layer.step(u[:, t], state)
        ys.append(y)
    torch.testing.assert_close(y_conv, torch.stack(ys, 1), atol=1e-4, rtol=1e-4)


def test_s4d_kernel_matches_complex_powers() -> None:
    torch.manual_seed(1)
    layer = S4D(4, 8)
    _, Abar, Ct = layer.discrete()
    direct = torch.stack([2 * (Ct * Abar**k).sum(-1).real for k in range(20)], -1)
    torch.testing.assert_close(layer.kernel(20), direct, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "kind", "config"), [
    ("spiking-ssm", "snn", {"d_model": 16, "n_layers": 2, "d_state": 8}),
    ("spiking-ssm", "ann", {"d_model": 16, "n_layers": 2, "d_state": 8}),
    ("spiking-ssm", "snn", {"d_model": 16, "n_layers": 2, "d_state": 8, "bipolar": True}),
    ("spiking-ssm", "snn", {"d_model": 16, "n_layers": 2, "d_state": 8, "levels": 3}),
    ("gpt2", "ann", {"n_layer": 2, "n_embd": 16, "n_head": 2, "n_positions": 64}),
])
def test_parallel_forward_equals_token_by_token_generation(name: str, kind: str, config: dict) -> None:
    torch.manual_seed(0)
    model = build_lm(name, kind, {"vocab_size": 40, **config}).eval()
    ids = torch.randint(0, 40, (2, 30))
    with torch.no_grad():
        parallel = model(ids)
        logits, state = model.prefill(ids[:, :5], model.start(2))
        steps = [logits]
        for t in range(5, 30):
            logits, state = model.step(ids[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(parallel[:, 4:], torch.stack(steps, 1), atol=1e-4, rtol=1e-4)


def test_spiking_sites_emit_binary_spikes_and_train_their_thresholds() -> None:
    torch.manual_seed(0)
    model = build_lm("spiking-ssm", "snn", {"vocab_size": 40, "d_model": 16, "n_layers": 1, "d_state": 8})
    block = model.blocks[0]
    seen = {}
    block.site.register_forward_hook(lambda m, i, o: seen.setdefault("s", o))
    model(torch.randint(0, 40, (2, 20))).sum().backward()
    assert set(seen["s"].unique().tolist()) <= {0.0, 1.0} and seen["s"].sum() > 0
    assert block.site.theta.grad is not None and block.site.theta.grad.abs().sum() > 0
    assert block.ssm.C.grad.abs().sum() > 0
    assert model.activity()[0]["neuron_steps"] == 2 * 20 * 16


@pytest.mark.parametrize(("options", "values"), [({"bipolar": True}, {-1.0, 0.0, 1.0}),
                                                 ({"levels": 3}, {0.0, 1.0, 2.0, 3.0})])
def test_signed_and_graded_spike_options(options: dict, values: set) -> None:
    torch.manual_seed(0)
    model = build_lm("spiking-ssm", "snn", {"vocab_size": 40, "d_model": 16, "n_layers": 1, "d_state": 8, **options})
    seen = {}
    model.blocks[0].site.register_forward_hook(lambda m, i, o: seen.setdefault("s", o))
    with torch.no_grad():
        model.blocks[0].site.theta.fill_(-2.0)  # strong drive, so every value shows up
        model(torch.randint(0, 40, (4, 40)))
    assert set(seen["s"].unique().tolist()) == values


def test_builders_refuse_what_they_cannot_build() -> None:
    with pytest.raises(UserError, match="ANN baseline only"):
        build_lm("gpt2", "snn", {"vocab_size": 10})
    with pytest.raises(UserError, match="classifier, not a language model"):
        build_lm("mlp", "snn", {})
    with pytest.raises(UserError, match="spiking-ssm"):
        build_lm("spiking-ssm", "snn", {"vocab_size": 10, "no_such_key": 1})


def test_pretrained_gpt2_loads_from_a_local_folder(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    reference = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2)).eval()
    reference.save_pretrained(tmp_path / "gpt2-tiny")
    model = build_lm("gpt2", "ann", {"vocab_size": 50, "pretrained": str(tmp_path / "gpt2-tiny")}).eval()
    ids = torch.randint(0, 50, (1, 10))
    torch.testing.assert_close(model(ids), reference(ids).logits)
    assert model.arch()["n_positions"] == 32
    with pytest.raises(UserError, match="cannot load GPT-2 weights"):
        build_lm("gpt2", "ann", {"vocab_size": 50, "pretrained": str(tmp_path / "missing")})


def test_twins_have_about_the_same_parameter_count() -> None:
    def params(recipe: str) -> int:
        r = load_recipe(recipe)
        model = build_lm(r.model.name, r.model.kind, {"vocab_size": 259, **r.model.config})
        return sum(p.numel() for p in model.parameters())

    for ssm, gpt in (("small-ssm", "small-gpt2"), ("chat-ssm", "chat-gpt2")):
        assert abs(params(gpt) / params(ssm) - 1) < 0.05, (ssm, gpt)
    assert abs(params("small-ssm-ann") / params("small-ssm") - 1) < 0.01


# -- training and bundles -------------------------------------------------------------------------

def test_training_writes_a_language_model_bundle(tiny_lm: Path) -> None:
    manifest = json.loads((tiny_lm / "snnctl.json").read_text())
    assert manifest["kind"] == "lm" and manifest["lm"]["spiking"] is True
    assert manifest["tokenizer"] == "tokenizer.json" and (tiny_lm / "tokenizer.json").is_file()
    assert manifest["chat"]["mode"] == "continuation" and not manifest["chat"]["instruction_tuned"]
    m = manifest["metrics"]
    assert m["dataset"] == "tinyshakespeare" and 0 < m["val_bpb"] < 9
    assert abs(m["val_bpb"] - m["val_loss"] / math.log(2)) < 1e-6  # byte tokens: one byte per token
    assert len(m["firing_rates"]) == 2 and 0 <= m["firing_rate"] <= 1
    lines = [json.loads(x) for x in (tiny_lm / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "val_bpb" in x] == [3]
    bundle = load_lm(tiny_lm)
    assert bundle.tokenizer.get_vocab_size() == bundle.model.vocab_size == 259


@pytest.mark.parametrize(("cadence", "stop"), [
    ([], 4),  # log every 2, checkpoint every 3: after the step-3 checkpoint and one step resuming must redo
    (["train.log_every=4", "train.checkpoint_every=2", "lm.eval_every=5"], 5),
])
def test_resumed_training_equals_uninterrupted(tmp_path: Path, cadence: list[str], stop: int) -> None:
    recipe = load_recipe("small-ssm", [*TINY_SSM, *cadence])
    whole = train(recipe, tmp_path / "whole").out

    def interrupt(step: int, total: int, info: dict) -> None:
        if step == stop:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(recipe, tmp_path / "part", on_step=interrupt)
    resumed = train(recipe, tmp_path / "part", resume=True).out
    a, b = load_lm(whole).model.state_dict(), load_lm(resumed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (whole / "metrics.jsonl").read_text() == (resumed / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match="different recipe"):
        train(load_recipe("small-ssm", [*TINY_SSM, "train.lr=1e-4"]), tmp_path / "part", resume=True)


def test_bundle_kinds_are_not_mixed_up(tiny_lm: Path, trained: dict[str, Path], tmp_path: Path) -> None:
    from snnctl.artifact import load_bundle

    with pytest.raises(UserError, match="language model, not a classifier"):
        load_bundle(tiny_lm)
    with pytest.raises(UserError, match="not a language model"):
        load_lm(trained["snn"])
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("snnctl.json", "model.safetensors"):
        (broken / f).write_bytes((tiny_lm / f).read_bytes())
    (broken / "tokenizer.json").write_bytes(toks.to_json(toks.train_bpe(["abc def " * 40], 300)))
    with pytest.raises(UserError, match="tokenizer has"):
        load_lm(broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(UserError, match=r"tokenizer\.json is missing"):
        load_lm(broken)


def test_recipes_and_datasets_of_the_wrong_task_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a text corpus"):
        train(load_recipe("small-ssm", [*TINY_SSM, "data.name=sst2"]), tmp_path / "a")
    with pytest.raises(UserError, match="text corpus, not a labelled dataset"):
        train(load_recipe("digits-ann", ["data.name=tinyshakespeare"]), tmp_path / "b")
    with pytest.raises(UserError, match="language model, not a classifier"):
        train(load_recipe("digits-ann", ["model.name=spiking-ssm"]), tmp_path / "c")
    with pytest.raises(UserError, match="vocab_size"):
        train(load_recipe("small-ssm", [*TINY_SSM, "model.config.vocab_size=100"]), tmp_path / "d")
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()


def test_bpe_recipe_trains_and_scores_in_bits_per_byte(tmp_path: Path) -> None:
    out = train(load_recipe("small-ssm", [*TINY_SSM, "lm.tokenizer=bpe", "lm.bpe_vocab=400"]), tmp_path / "b").out
    bundle = load_lm(out)
    m = bundle.manifest["metrics"]
    assert bundle.tokenizer.get_vocab_size() == 400 and merges(bundle.tokenizer)
    assert m["val_bpb"] < m["val_loss"] / math.log(2)  # more than one byte per token


# -- generation and sessions ----------------------------------------------------------------------

def test_sampling_filters() -> None:
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    greedy = Sampling(temperature=0)
    assert pick(logits, greedy, None) == 1
    g = torch.Generator().manual_seed(0)
    assert {pick(logits, Sampling(temperature=5, top_k=1), g) for _ in range(20)} == {1}
    assert {pick(logits, Sampling(temperature=5, top_k=0, top_p=0.01), g) for _ in range(20)} == {1}
    assert {pick(logits, Sampling(temperature=1, top_k=2, top_p=1), g) for _ in range(200)} == {1, 2}
    a = [pick(logits, Sampling(temperature=1), torch.Generator().manual_seed(3)) for _ in range(5)]
    b = [pick(logits, Sampling(temperature=1), torch.Generator().manual_seed(3)) for _ in range(5)]
    assert a == b
    for bad in (Sampling(temperature=-1), Sampling(top_k=-1), Sampling(top_p=0), Sampling(max_tokens=0)):
        with pytest.raises(UserError):
            bad.check()


def test_generation_streams_counts_spikes_and_estimates_energy(tiny_lm: Path) -> None:
    bundle = load_lm(tiny_lm)
    gen = Generator(bundle.model, bundle.tokenizer)
    gen.feed(bundle.tokenizer.encode("ROMEO:").ids)
    stats = ReplyStats()
    pieces = list(gen.stream(Sampling(max_tokens=20, seed=0, top_k=0, top_p=1), stats))
    assert stats.tokens == 20 and stats.stop == "max_tokens"
    assert len(pieces) >= 2 and stats.context_tokens == 26
    assert stats.spikes_per_token is not None and 0 <= stats.firing_rate <= 1
    assert stats.spikes_per_token == pytest.approx(stats.firing_rate * 2 * 32)
    assert stats.energy_nj_per_token["compute_nj"] > 0
    # The SNN's mixing layers accumulate weight columns per spike; its twin multiplies them all.
    twin = build_lm("spiking-ssm", "ann", dict(bundle.manifest["zoo"]["config"]))
    snn_ops = bundle.model.token_ops([10.0, 10.0])
    assert snn_ops["sops"] == 2 * 10 * 64 and twin.token_ops([0, 0])["macs"] == snn_ops["macs"] + 2 * 64 * 32


def test_a_full_kv_cache_refuses_more_text() -> None:
    model = build_lm("gpt2", "ann", {"vocab_size": 259, "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 16})
    gen = Generator(model, toks.byte_tokenizer())
    gen.feed(list(range(10)))
    with pytest.raises(UserError, match="room for 6 more"):
        gen.feed(list(range(7)))
    stats = ReplyStats()
    list(gen.stream(Sampling(max_tokens=50, temperature=0), stats))
    assert stats.stop == "context_full" and gen.context == 16


def test_dialogue_session_wraps_turns_and_stops_at_the_next_turn(tiny_chat: Path, tmp_path: Path) -> None:
    bundle = load_lm(tiny_chat)
    session = ChatSession(bundle, Sampling(max_tokens=30, seed=0))
    assert session.dialogue and "not instruction-tuned" in session.notice()
    ids = session.encode_message(" Hello ")
    assert bundle.tokenizer.decode(ids, skip_special_tokens=False) == "<|user|> Hello\n<|assistant|> "
    reply, stats = session.ask("Hello")
    assert stats.stop in ("stop_token", "max_tokens") and stats.prompt_tokens == len(ids)
    assert session.turns[0] == {"role": "user", "text": "Hello"} and session.turns[1]["text"] == reply
    saved = json.loads(session.save(tmp_path / "chat.json").read_text())
    assert saved["turns"][1]["stats"]["tokens"] == stats.tokens
    assert session.totals()["replies"] == 1
    with pytest.raises(UserError, match="empty"):
        session.ask("   ")
    with pytest.raises(UserError, match="folder does not exist"):
        session.save(tmp_path / "nope" / "x.json")
    session.reset()
    assert session.turns == [] and session.generator.context == 0


def test_seeded_replies_repeat_and_reset_forgets(tiny_chat: Path) -> None:
    bundle = load_lm(tiny_chat)
    first = ChatSession(bundle, Sampling(max_tokens=15, seed=7)).ask("How are you?")[0]
    session = ChatSession(bundle, Sampling(max_tokens=15, seed=7))
    assert session.ask("How are you?")[0] == first
    session.ask("Tell me a joke")
    session.reset()
    assert session.ask("How are you?")[0] == first  # the state is fresh again


def test_models_declare_their_parameter_groups() -> None:
    """The SSM keeps A and dt apart (their own rate, no decay); embeddings, norms and biases get no decay."""
    ssm = build_lm("spiking-ssm", "snn", {"vocab_size": 16, "d_model": 8, "n_layers": 1, "d_state": 4})
    groups = {g["name"]: g for g in ssm.param_groups(0.1)}
    block = ssm.blocks[0]
    assert [id(p) for p in groups["ssm_dynamics"]["params"]] == [
        id(block.ssm.log_dt), id(block.ssm.log_A_real), id(block.ssm.A_imag)]
    assert groups["decayed"]["weight_decay"] == 0.1 and groups["plain"]["weight_decay"] == 0.0
    assert any(p is ssm.embed.weight for p in groups["plain"]["params"])
    assert any(p is block.mix.weight for p in groups["decayed"]["params"])
    assert sum(len(g["params"]) for g in groups.values()) == len(list(ssm.parameters()))
    gpt = build_lm("gpt2", "ann", {"vocab_size": 16, "n_layer": 1, "n_embd": 8, "n_head": 2, "n_positions": 16})
    plain = {id(p) for g in gpt.param_groups(0.1) if g["name"] == "plain" for p in g["params"]}
    assert id(gpt.net.transformer.wte.weight) in plain and id(gpt.net.transformer.wpe.weight) in plain
