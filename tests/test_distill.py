"""Distillation: the loss, the logits folder (shards, resume, checks), prepare and train through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from snnctl.data import find_shared
from snnctl.errors import UserError
from snnctl.training.distill import kl_term
from snnctl.training.logits import LogitStore, TeacherRows, top_k_rows
from tests.conftest import error_lines

QUICK = ["--set", "train.epochs=1", "--set", "model.config.channels=[4, 8]"]
SHAKESPEARE = find_shared("tinyshakespeare", ("input.txt",)) / "input.txt"
TINY_LM = {"ssm": ["model.config.d_model=16", "model.config.n_layers=1", "model.config.d_state=4"],
           "gpt2": ["model.config.n_layer=1", "model.config.n_embd=16", "model.config.n_head=2",
                    "model.config.n_positions=32"]}
LM_RUN = ["lm.seq_len=32", "lm.steps=3", "lm.eval_every=100", "lm.eval_windows=1", "train.batch_size=4"]


def sets(values: list[str]) -> list[str]:
    return [a for v in values for a in ("--set", v)]


def test_kl_is_hintons_with_full_logits_and_exact_with_a_complete_top_k() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    expected = torch.nn.functional.kl_div((s / 4).log_softmax(-1), (t / 4).log_softmax(-1), log_target=True,
                                          reduction="batchmean")
    assert torch.allclose(kl_term(s, TeacherRows(full=t), 4.0), expected, atol=1e-6)
    complete = top_k_rows(t, 10, 4.0)
    rows = TeacherRows(values=complete["values"].float(), indices=complete["indices"].long(), lse=complete["lse"])
    assert torch.allclose(kl_term(s, rows, 4.0), expected, atol=2e-3)  # values kept in float16


def test_top_k_bucket_is_zero_for_the_teacher_itself_and_grows_with_the_tail_wrong() -> None:
    torch.manual_seed(1)
    t = torch.randn(8, 50) * 3
    kept = top_k_rows(t, 5, 2.0)
    rows = TeacherRows(values=kept["values"].float(), indices=kept["indices"].long(), lse=kept["lse"])
    same = kl_term(t, rows, 2.0)
    assert abs(float(same)) < 5e-3
    tail_heavy = t.clone()
    tail_heavy.scatter_(-1, kept["indices"].long(), -10.0)  # the student puts nothing on the teacher's top 5
    assert float(kl_term(tail_heavy, rows, 2.0)) > 1.0
    assert float(kl_term(t + 0.5 * torch.randn_like(t), rows, 2.0)) > float(same)


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from snnctl.config import load_recipe
    from snnctl.training.trainer import train

    recipe = load_recipe("digits-ann", ["train.epochs=2", "model.config.channels=[8, 16]"])
    return train(recipe, tmp_path_factory.mktemp("teacher") / "ann").out


@pytest.fixture(scope="module")
def digits_logits(digits_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from snnctl.distill.prepare import PrepareJob, prepare

    out = tmp_path_factory.mktemp("logits") / "digits"
    prepare(PrepareJob(teacher=str(digits_teacher), dataset="digits", out=out, shard_rows=500))
    return out


def test_prepared_rows_are_the_teachers_logits_in_training_order(digits_teacher: Path, digits_logits: Path) -> None:
    from snnctl.artifact import load_bundle
    from snnctl.data import load_dataset

    store = LogitStore(digits_logits)
    ds = load_dataset("digits")
    m = store.manifest
    assert m["rows"] == len(ds.y_train) and m["top_k"] is None and m["classes"] == 10 and len(m["shards"]) == 3
    ids = torch.tensor([0, 499, 500, 1000, len(ds.y_train) - 1, 3])
    with torch.no_grad():
        expected = load_bundle(digits_teacher).model.eval()(ds.x_train[ids])
    assert torch.allclose(store.rows(ids).full, expected, atol=1e-5)
    assert m["bytes_per_row"] < 60 and m["prepare"]["rows_per_s"] > 0 and m["prepare"]["peak_rss_mb"] > 0


def test_an_interrupted_prepare_resumes_with_its_finished_shards(digits_teacher: Path, digits_logits: Path,
                                                                 tmp_path: Path) -> None:
    from snnctl.distill.prepare import PrepareJob, prepare

    job = PrepareJob(teacher=str(digits_teacher), dataset="digits", out=tmp_path / "l", shard_rows=500)
    seen = []

    def stop_in_second_shard(n: int, total: int) -> None:
        seen.append(n)
        if sum(seen) > 600:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(job, stop_in_second_shard)
    with pytest.raises(UserError, match="unfinished"):
        LogitStore(tmp_path / "l")
    index = prepare(job)
    assert index["prepare"]["rows_computed"] == index["rows"] - 500  # the first shard was kept
    first = json.loads((digits_logits / "logits.json").read_text())["shards"]
    assert [s["sha256"] for s in index["shards"]] == [s["sha256"] for s in first]


def test_a_truncated_shard_is_refused(digits_logits: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in digits_logits.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    shard = copy / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(UserError, match="missing, truncated or changed"):
        LogitStore(copy)


def test_cli_distils_a_spiking_student_from_precomputed_and_online_teachers(cli, digits_teacher: Path,
                                                                          digits_logits: Path, tmp_path: Path) -> None:
    student = ["--set", "train.epochs=3", "--set", "train.log_every=20"]  # fewer epochs do not learn digits yet
    pre = cli("train", "--recipe", "digits-snn", "--distill", digits_logits, *student,
              "--out", tmp_path / "pre", "--json")
    assert pre.code == 0, pre.err
    assert 0.5 < json.loads(pre.out)["test_acc"] <= 1
    manifest = json.loads((tmp_path / "pre" / "snnctl.json").read_text())
    assert manifest["distilled"]["logits"] == str(digits_logits) and manifest["distilled"]["alpha"] == 0.7
    online = cli("train", "--recipe", "digits-snn", "--teacher", digits_teacher, *student,
                 "--out", tmp_path / "online", "--json")
    assert online.code == 0, online.err
    lines = [[json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
             for d in ("pre", "online")]
    assert lines[0][0]["kl"] > 0
    for a, b in zip(*lines, strict=True):  # full logits stored in float32: the same losses as online
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["kl"] == pytest.approx(b["kl"], rel=1e-3)
    show = cli("distill", "show", digits_logits, "--json")
    assert show.code == 0 and json.loads(show.out)["rows"] == 1437  # digits' training split, one row each


def test_an_snn_bundle_teaches_too(cli, trained: dict[str, Path], tmp_path: Path) -> None:
    done = cli("distill", "prepare", "--teacher", trained["snn"], "--dataset", "digits", "--top-k", "4",
               "--out", tmp_path / "l", "--json")
    assert done.code == 0, done.err
    index = json.loads(done.out)
    assert index["top_k"] == 4 and index["teacher"]["kind"] == "snn" and 0 < index["mass_kept"]["T1_k4"] <= 1


@pytest.mark.parametrize("args, message", [
    (["--set", "distill.alpha=1.5"], "distill.alpha"),
    (["--set", "distill.temperature=0"], "distill.temperature"),
    (["--set", "data.test_fraction=0.3"], "other data"),
])
def test_train_refuses_logits_that_do_not_fit(cli, digits_logits: Path, tmp_path: Path, args: list[str],
                                              message: str) -> None:
    result = cli("train", "--recipe", "digits-snn", "--distill", digits_logits, *QUICK, *args,
                 "--out", tmp_path / "o")
    assert result.code == 2 and message in result.err and len(error_lines(result.err)) == 1, result.err
    assert not (tmp_path / "o").exists()


def test_prepare_refuses_bad_input(cli, digits_teacher: Path, digits_logits: Path, tmp_path: Path) -> None:
    cases = [
        (["--teacher", digits_teacher, "--dataset", "digits", "--top-k", "11"], "larger than the teacher's 10"),
        (["--teacher", digits_teacher, "--dataset", "sst2"], "cannot read this dataset"),
        (["--teacher", tmp_path / "nothing", "--dataset", "digits"], "teacher not found"),
        (["--teacher", digits_teacher], "--dataset or --recipe"),
    ]
    for args, message in cases:
        result = cli("distill", "prepare", *args, "--out", tmp_path / "o")
        assert result.code == 2 and message in result.err and len(error_lines(result.err)) == 1, result.err
        assert not (tmp_path / "o").exists()
    again = cli("distill", "prepare", "--teacher", digits_teacher, "--dataset", "digits", "--out", digits_logits)
    assert again.code == 2 and "already holds prepared logits" in again.err
    (tmp_path / "empty").mkdir()
    missing = cli("train", "--recipe", "digits-snn", "--distill", tmp_path / "empty", *QUICK, "--out", tmp_path / "t")
    assert missing.code == 2 and "no prepared logits" in missing.err


@pytest.fixture(scope="module")
def lm_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 20 kB text, a tiny GPT-2 teacher on it (snnctl bundle and the same weights as a save_pretrained
    folder) and student recipes for it."""
    from snnctl.config import load_recipe
    from snnctl.training.trainer import train

    root = tmp_path_factory.mktemp("lm")
    (root / "text.txt").write_text(SHAKESPEARE.read_text()[:20_000])
    for name, base in (("student", "small-ssm"), ("teacher", "small-gpt2")):
        (root / f"{name}.toml").write_text(f'extends = "{base}"\n[data]\nname = "textfile"\n'
                                           f'options = {{ path = "{root / "text.txt"}" }}\n')
    teacher = train(load_recipe(str(root / "teacher.toml"), TINY_LM["gpt2"] + LM_RUN), root / "teacher").out
    return {"root": root, "teacher": teacher, "student": root / "student.toml"}


def test_language_model_distils_from_top_k_of_a_gpt2_teacher(cli, lm_setup: dict[str, Path]) -> None:
    from snnctl.lm.bundle import load_lm

    root = lm_setup["root"]
    prep = cli("distill", "prepare", "--teacher", lm_setup["teacher"], "--recipe", lm_setup["student"],
               "--seq-len", "32", "--top-k", "8", "--out", root / "logits", "--json")
    assert prep.code == 0, prep.err
    index = json.loads(prep.out)
    tok = load_lm(lm_setup["teacher"]).tokenizer
    n_ids = len(tok.encode(SHAKESPEARE.read_text()[:18_000]).ids)  # the training text: the first 90 %
    assert index["task"] == "lm" and index["top_k"] == 8 and index["seq_len"] == 32
    assert index["classes"] == tok.get_vocab_size() and index["rows"] == (n_ids - 1) // 32 * 32
    assert index["bytes_per_row"] < 40 and 0 < index["mass_kept"]["T_k8"] < index["mass_kept"]["T1_k8"] <= 1
    done = cli("train", "--recipe", lm_setup["student"], "--distill", root / "logits",
               *sets(TINY_LM["ssm"] + LM_RUN + ["train.log_every=1"]), "--out", root / "s", "--json")
    assert done.code == 0, done.err
    lines = [json.loads(x) for x in (root / "s" / "metrics.jsonl").read_text().splitlines()]
    assert all(line["kl"] > 0 for line in lines) and json.loads(done.out)["val_bpb"] > 0
    hot = cli("train", "--recipe", lm_setup["student"], "--distill", root / "logits", "--set", "distill.temperature=2",
              *sets(TINY_LM["ssm"] + LM_RUN), "--out", root / "t")
    assert hot.code == 2 and "kept for temperature 4.0" in hot.err
    bpe = cli("train", "--recipe", lm_setup["student"], "--distill", root / "logits", "--set", "lm.tokenizer=bpe",
              "--set", "lm.bpe_vocab=300", *sets(TINY_LM["ssm"] + LM_RUN), "--out", root / "u")
    assert bpe.code == 2 and "another tokenizer" in bpe.err


def test_a_hugging_face_causal_lm_folder_teaches_online(cli, lm_setup: dict[str, Path]) -> None:
    from snnctl.lm.bundle import load_lm

    bundle = load_lm(lm_setup["teacher"])
    folder = lm_setup["root"] / "hf"
    bundle.model.net.save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes((lm_setup["teacher"] / "tokenizer.json").read_bytes())
    done = cli("train", "--recipe", lm_setup["student"], "--teacher", folder, *sets(TINY_LM["ssm"] + LM_RUN),
               "--out", lm_setup["root"] / "online", "--json")
    assert done.code == 0, done.err
    manifest = json.loads((lm_setup["root"] / "online" / "snnctl.json").read_text())
    assert manifest["distilled"]["online"] and manifest["distilled"]["teacher"]["source"] == str(folder)
