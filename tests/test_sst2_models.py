"""The SST-2 text classifiers (textssm, spikeformer, bert): twins from one definition, padding that is
neither work nor signal, operation counts over real tokens, the BERT checkpoint path, and the bench
and bad-input contract for text bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from snnctl.config import load_recipe
from snnctl.errors import UserError
from snnctl.metrics.activity import ActivityMeter
from snnctl.zoo import build_network

LIF = {"type": "lif", "tau": 2.0, "threshold": 1.0}
SMALL = {"textssm": {"d_model": 16, "n_layers": 1, "d_state": 8},
         "spikeformer": {"d_model": 16, "n_layers": 1, "heads": 2, "ff": 32},
         "bert": {"d_model": 16, "n_layers": 1, "heads": 2, "ff": 32}}


def model(name: str, kind: str, vocab: int = 50, length: int = 12, **over: object) -> torch.nn.Module:
    torch.manual_seed(0)
    config = {"vocab_size": vocab, "length": length, **SMALL[name], **over}
    return build_network(name, config, kind=kind, neuron=LIF if kind == "snn" else None).eval()


def ids(rows: int = 4, length: int = 12, real: tuple[int, ...] = (3, 7, 12, 1)) -> torch.Tensor:
    torch.manual_seed(1)
    x = torch.randint(2, 50, (rows, length))
    for i, n in enumerate(real[:rows]):
        x[i, n:] = 0
    return x


TWINS = [("textssm", "snn", {}), ("textssm", "ann", {}), ("textssm", "snn", {"bidirectional": True}),
         ("spikeformer", "snn", {}), ("spikeformer", "ann", {}), ("bert", "ann", {})]


@pytest.mark.parametrize(("name", "kind", "over"), TWINS)
def test_padding_changes_neither_the_logits_nor_the_counted_work(name: str, kind: str, over: dict) -> None:
    m = model(name, kind, length=20, **over)
    x = ids()
    padded = torch.cat([x, torch.zeros(4, 8, dtype=x.dtype)], 1)
    with torch.no_grad():
        torch.testing.assert_close(m(padded), m(x), atol=1e-5, rtol=1e-5)
        counts = []
        for inp in (x, padded):
            with ActivityMeter(m) as act:
                m(inp)
            counts.append({k: act.total(k) for k in ("macs", "sops", "spikes", "neuron_steps")})
    for key in counts[0]:
        assert counts[1][key] == pytest.approx(counts[0][key], rel=1e-5), key
    assert counts[0]["macs"] + counts[0]["sops"] > 0


@pytest.mark.parametrize("name", ["textssm", "spikeformer"])
def test_snn_and_ann_twins_share_one_definition_and_the_snn_spikes(name: str) -> None:
    snn, ann = model(name, "snn"), model(name, "ann")
    assert [k for k, _ in snn.named_parameters()] == [k for k, _ in ann.named_parameters()]
    with torch.no_grad(), ActivityMeter(snn) as act:
        snn(ids())
    assert act.total("spikes") > 0 and act.total("sops") > 0
    sites = [m for m in snn.modules() if type(m).__name__ == "TokenSpikes"]
    assert sites
    seen: list[torch.Tensor] = []
    hooks = [s.register_forward_hook(lambda _m, _i, out: seen.append(out)) for s in sites]
    with torch.no_grad():
        snn(ids())
    for h in hooks:
        h.remove()
    assert all(bool(((s == 0) | (s == 1)).all()) for s in seen)


def test_a_linear_layer_is_counted_over_real_tokens_only() -> None:
    m = model("bert", "ann")
    x = ids(real=(3, 7, 12, 1))
    with torch.no_grad(), ActivityMeter(m) as act:
        m(x)
    query = act.layers["body.bert.encoder.layer.0.attention.self.query"]
    assert query.macs == (3 + 7 + 12 + 1) * 16 * 16


def test_the_shipped_sst2_pairs_match_in_parameters() -> None:
    sizes = {}
    for recipe in ("sst2-ssm-snn", "sst2-ssm-ann", "sst2-attn-snn", "sst2-bert-ann"):
        r = load_recipe(recipe)
        net = build_network(r.model.name, {"vocab_size": 16384, "length": 48, **r.model.config},
                            kind=r.model.kind, neuron=r.neuron.model_dump())
        sizes[recipe] = sum(p.numel() for p in net.parameters())
    assert sizes["sst2-ssm-snn"] == sizes["sst2-ssm-ann"]
    assert abs(sizes["sst2-attn-snn"] / sizes["sst2-bert-ann"] - 1) < 0.10
    assert abs(sizes["sst2-ssm-snn"] / sizes["sst2-bert-ann"] - 1) < 0.10  # both SNNs the transformer's size


def test_bert_loads_a_local_checkpoint_and_refuses_another_vocabulary(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(3)
    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=12, type_vocab_size=1),
              add_pooling_layer=False).save_pretrained(tmp_path / "ckpt")
    saved = BertModel.from_pretrained(tmp_path / "ckpt", add_pooling_layer=False)
    m = model("bert", "ann", pretrained=str(tmp_path / "ckpt"))
    assert torch.equal(m.body.bert.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight)
    with pytest.raises(UserError, match="token ids"):
        model("bert", "ann", vocab=60, pretrained=str(tmp_path / "ckpt"))
    with pytest.raises(UserError, match="cannot load BERT checkpoint"):
        model("bert", "ann", pretrained=str(tmp_path / "missing"))


def test_bert_has_no_snn_twin() -> None:
    with pytest.raises(UserError, match="no SNN twin"):
        model("bert", "snn")


def test_text_longer_than_the_context_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than the model's context of 12"):
        model("spikeformer", "snn")(torch.ones(1, 13, dtype=torch.long))


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from snnctl.cli import run

    out = tmp_path_factory.mktemp("sst2") / "attn"
    code = run([
        "train", "--recipe", "sst2-attn-snn", "--out", str(out), "--json",
        "--set", "data.options.train_limit=256", "--set", "data.options.vocab_size=500",
        "--set", "train.epochs=1", "--set", "model.config.d_model=16", "--set", "model.config.ff=32",
        "--set", "model.config.heads=2"])
    assert code == 0
    return out


def test_bench_measures_a_text_bundle(cli, text_bundle: Path) -> None:
    assert (text_bundle / "tokenizer.json").is_file()
    done = cli("bench", str(text_bundle), "--dataset", "sst2", "--latency-samples", "3", "--json")
    assert done.code == 0, done.err
    r = json.loads(done.out)["model"]
    long = r["subsets"]["long"]
    assert 0 < long["size"] < r["test_samples"] and 0 <= long["accuracy"] <= 1
    assert r["spikes_per_token"] == pytest.approx(r["spikes_per_inference"] / r["tokens_per_inference"])
    assert r["latency_b1_ms"]["p50"] > 0 and r["latency_stream_ms"] is None
    vs = r["vs_int8_ann"]
    assert 0 < vs["spike_rate"] < 1 and vs["break_even_rate"] > 0
    assert {layer["layer"].split(".")[-2] for layer in r["layers"]} >= {"site_q", "site_k", "site_v"}
    assert {layer["neurons"] for layer in r["layers"]} <= {16, 32}  # per token: d_model or ff wide


def test_bench_refuses_a_tokenizer_that_is_not_the_bundles(cli, text_bundle: Path, tmp_path: Path) -> None:
    from snnctl.data import text as T

    other = tmp_path / "other"
    other.mkdir()
    for f in (f for f in text_bundle.iterdir() if f.is_file()):
        (other / f.name).write_bytes(f.read_bytes())
    (other / "tokenizer.json").write_text(T.word_tokenizer({"good": 2, "bad": 3}).to_str())
    done = cli("bench", str(other), "--dataset", "sst2", "--latency-samples", "1")
    assert done.code == 2 and "another tokenizer" in done.err and len(done.err.strip().splitlines()) == 1


def test_bench_refuses_images_for_a_text_model(cli, text_bundle: Path) -> None:
    done = cli("bench", str(text_bundle), "--dataset", "digits", "--latency-samples", "1")
    assert done.code == 2 and "token ids" in done.err and len(done.err.strip().splitlines()) == 1


def test_an_empty_sentence_is_refused(cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for split in ("train", "dev"):
        (src / f"{split}.tsv").write_text("sentence\tlabel\ngood movie\t1\n \t0\nbad\t0\n")
    done = cli("data", "prepare", str(src), "--out", str(tmp_path / "out"))
    assert done.code == 2 and "row 2 is empty" in done.err and not (tmp_path / "out").exists()
    recipe = ["train", "--recipe", "sst2-ssm-snn", "--set", f'data.options.path="{src}"', "--out", str(tmp_path / "m")]
    done = cli(*recipe)
    assert done.code == 2 and "row 2 is empty" in done.err and not (tmp_path / "m").exists()


def test_training_normalises_over_real_tokens_and_one_token_takes_the_running_statistics() -> None:
    from snnctl.zoo.sequence import TokenBatchNorm

    torch.manual_seed(4)
    y = torch.randn(2, 5, 4)
    keep = torch.zeros(2, 5, dtype=torch.bool)
    keep[0, :3], keep[1, :1] = True, True
    out = TokenBatchNorm(4).train()(y, keep)
    real = y[keep]
    torch.testing.assert_close(out[keep], (real - real.mean(0)) / torch.sqrt(real.var(0, unbiased=False) + 1e-5))
    assert bool((out[~keep] == 0).all())
    one = TokenBatchNorm(4).train()
    single = torch.zeros_like(keep)
    single[1, 2] = True
    out = one(y, single)  # no batch statistics from one token: the running ones (mean 0, var 1)
    torch.testing.assert_close(out[single], y[single] / (1 + 1e-5) ** 0.5)
    assert bool((one.running_mean == 0).all()) and bool((out[~single] == 0).all())


@pytest.mark.parametrize(("name", "kind"), [("textssm", "snn"), ("spikeformer", "snn"), ("spikeformer", "ann")])
def test_padding_changes_nothing_in_training_either(name: str, kind: str) -> None:
    m = model(name, kind, length=20, dropout=0.0).train()
    x = ids()
    padded = torch.cat([x, torch.zeros(4, 8, dtype=x.dtype)], 1)
    torch.testing.assert_close(m(padded), m(x), atol=1e-5, rtol=1e-5)


def test_bert_refuses_a_checkpoint_of_another_architecture(tmp_path: Path) -> None:
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50).save_pretrained(tmp_path / "gpt")
    with pytest.raises(UserError, match="is a gpt2 checkpoint, not BERT"):
        model("bert", "ann", pretrained=str(tmp_path / "gpt"))
    with pytest.raises(UserError, match="does not split into 3 attention heads"):
        model("bert", "ann", heads=3)


def test_break_even_is_where_the_snn_costs_what_the_int8_ann_does_and_none_when_unreachable() -> None:
    from snnctl.metrics import energy

    fed, other, updates = 1e6, 2e5, 4e4
    r = energy.break_even_rate(fed, 0.1 * fed, other, updates, T=1)["break_even_rate"]
    assert r is not None and r > 0
    at = energy.break_even_rate(fed, r * fed, other, updates, T=1)
    assert at["snn_int8_nj"] == pytest.approx(at["ann8_nj"])
    # dense parts and membrane updates already dearer than the whole ANN: no rate breaks even
    assert energy.break_even_rate(fed, 0.1 * fed, 1e8, updates, T=4)["break_even_rate"] is None


def test_data_encoded_with_another_tokenizer_is_refused() -> None:
    from snnctl.data import text as T

    ours, theirs = T.word_tokenizer({"good": 2, "bad": 3}), T.word_tokenizer({"good": 2, "dull": 3})
    T.check_same(ours, ours.to_str(), where="--dataset sst2")  # the same tokenizer passes
    T.check_same(None, theirs.to_str(), where="--dataset sst2")  # nothing to compare
    with pytest.raises(UserError, match="another tokenizer"):
        T.check_same(ours, theirs.to_str(), where="--dataset sst2")


def test_a_converted_text_bundle_keeps_its_parents_tokenizer(cli, tmp_path: Path) -> None:
    ann, raw, calibrated = tmp_path / "mlp", tmp_path / "raw", tmp_path / "cal"
    done = cli("train", "--recipe", "sst2-ann", "--out", str(ann), "--set", "data.options.train_limit=256",
               "--set", "data.options.vocab_size=500", "--set", "train.epochs=1",
               "--set", "model.config.embed_dim=8", "--set", "model.config.hidden=[16]")
    assert done.code == 0, done.err
    done = cli("convert", str(ann), "--dataset", "sst2", "--T", "2", "--out", str(raw))
    assert done.code == 0, done.err
    done = cli("calibrate", str(raw), "--dataset", "sst2", "--out", str(calibrated))
    assert done.code == 0, done.err
    for out in (raw, calibrated):
        assert (out / "tokenizer.json").read_bytes() == (ann / "tokenizer.json").read_bytes()
        assert json.loads((out / "snnctl.json").read_text())["tokenizer"] == "tokenizer.json"
    done = cli("bench", str(calibrated), "--dataset", "sst2", "--latency-samples", "2", "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["model"]["tokens_per_inference"] > 1


def test_the_backward_pass_reads_each_sentence_right_to_left() -> None:
    from snnctl.lm.classifier import reverse_real

    x = torch.arange(1, 13, dtype=torch.float32).view(2, 6, 1)
    keep = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    flipped = reverse_real(x, keep)
    assert flipped[0, :, 0].tolist() == [3, 2, 1, 4, 5, 6] and flipped[1, :, 0].tolist() == [12, 11, 10, 9, 8, 7]
    torch.testing.assert_close(reverse_real(flipped, keep), x)
    m = model("textssm", "ann", bidirectional=True)
    first, last = ids(rows=1, real=(5,)), ids(rows=1, real=(5,))
    last[0, 4] = 2 if int(last[0, 4]) != 2 else 3  # change the last word only
    with torch.no_grad():  # the first token's state now depends on the words after it
        a = m.body.blocks[0].ssm_back(reverse_real(m.body.blocks[0].norm(m.body.embed(first)), first != 0))
        b = m.body.blocks[0].ssm_back(reverse_real(m.body.blocks[0].norm(m.body.embed(last)), last != 0))
    assert not torch.allclose(reverse_real(a, first != 0)[0, 0], reverse_real(b, last != 0)[0, 0])
