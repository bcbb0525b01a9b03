"""Dialogues through `snnctl data prepare --format dialogue` (Schema-Guided Dialogue's JSON lines), shown
by `snnctl data show`, rendered with the chat template for language models, and the `sgd` built-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snnctl.config import load_recipe
from snnctl.data import find_shared, load_dataset
from snnctl.data.formats import detect
from snnctl.data.prepared import MANIFEST
from snnctl.errors import UserError
from snnctl.lm.corpus import CHAT_TEMPLATE, SGD_FILE, render_dialogue
from snnctl.lm.task import load_corpus
from tests.conftest import error_lines
from tests.test_data import no_leftovers
from tests.test_lm import TINY_SSM


def sgd_record(i: int) -> dict:
    """One SGD-shaped dialogue; every fifth has two USER turns in a row, every seventh is opened by SYSTEM."""
    turns = [("USER", f"I need a table for {i} people."), ("SYSTEM", f"Which city, for dialogue {i}?"),
             ("USER", "San Jose, please."), ("SYSTEM", "Your table at Sino is booked.")]
    if i % 5 == 0:
        turns.insert(1, ("USER", "Somewhere quiet."))
    if i % 7 == 0:
        turns.insert(0, ("SYSTEM", "Welcome back."))
    return {"dialogue_id": f"1_{i:05d}", "services": ["Restaurants_2"],
            "turns": [{"speaker": s, "utterance": u} for s, u in turns]}


def sgd_file(path: Path, n: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(sgd_record(i)) + "\n" for i in range(n)))
    return path


def prepare(cli, source: Path, out: Path, *args: str) -> dict:
    result = cli("data", "prepare", source, "--out", out, "--json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def rows(folder: Path, split: str) -> list[dict]:
    import datasets

    return list(datasets.load_from_disk(str(folder / "hf"))[split])


@pytest.fixture
def prepared(cli, tmp_path: Path) -> Path:
    prepare(cli, sgd_file(tmp_path / "src" / "dialogues.jsonl"), tmp_path / "dlg", "--test-fraction", "0.25")
    return tmp_path / "dlg"


# -- prepare and show -----------------------------------------------------------------------------

def test_dialogues_are_detected_split_whole_and_fingerprinted_repeatably(cli, prepared: Path, tmp_path: Path):
    manifest = json.loads((prepared / MANIFEST).read_text())
    assert manifest["format"] == "dialogue" and manifest["modality"] == "dialogue" and manifest["classes"] == []
    assert manifest["counts"] == {"train": {"examples": 15}, "test": {"examples": 5}}
    assert manifest["split"] == {"rule": "random", "test_fraction": 0.25, "seed": 0}
    assert manifest["info"]["dialogues"] == 20 and manifest["info"]["merged_turns"] == 4
    assert manifest["info"]["opened_by_assistant"] == 3
    train, test = rows(prepared, "train"), rows(prepared, "test")
    ids = [r["id"] for r in train + test]
    assert sorted(ids) == [f"1_{i:05d}" for i in range(20)]  # every dialogue once, whole, on one side
    by_id = {r["id"]: r for r in train + test}
    assert by_id["1_00005"]["turns"][0] == "I need a table for 5 people. Somewhere quiet."  # merged
    assert by_id["1_00007"]["turns"][:2] == ["", "Welcome back."]  # the user always first
    assert by_id["1_00003"]["services"] == ["Restaurants_2"] and len(by_id["1_00003"]["turns"]) == 4
    again = prepare(cli, tmp_path / "src" / "dialogues.jsonl", tmp_path / "again", "--test-fraction", "0.25")
    assert again["fingerprint"] == manifest["fingerprint"]
    assert [r["id"] for r in rows(tmp_path / "again", "test")] == [r["id"] for r in test]
    other = prepare(cli, tmp_path / "src" / "dialogues.jsonl", tmp_path / "other", "--test-fraction", "0.25",
                    "--seed", "1")
    assert other["fingerprint"] != manifest["fingerprint"]
    assert no_leftovers(tmp_path)


def test_jsonl_without_turns_stays_a_table_and_format_dialogue_always_reads(cli, tmp_path: Path):
    table = tmp_path / "table.jsonl"
    table.write_text("".join(json.dumps({"text": f"row {i}", "label": i % 2}) + "\n" for i in range(10)))
    assert detect(table) == "jsonl" and detect(sgd_file(tmp_path / "d" / "x.jsonl")) == "dialogue"
    assert detect(tmp_path / "d") == "dialogue"
    plain = tmp_path / "plain.json"  # plain string turns, any suffix of JSON lines
    plain.write_text("".join(json.dumps({"id": i, "turns": ["hi", "hello", "bye"]}) + "\n" for i in range(8)))
    manifest = prepare(cli, plain, tmp_path / "p", "--format", "dialogue")
    assert manifest["format"] == "dialogue" and rows(tmp_path / "p", "train")[0]["turns"] == ["hi", "hello", "bye"]


def test_show_gives_counts_turn_statistics_and_examples(cli, prepared: Path):
    result = cli("data", "show", prepared, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["modality"] == "dialogue" and summary["num_classes"] == 0 and summary["picture"] is None
    assert {k: v["examples"] for k, v in summary["splits"].items()} == {"train": 15, "test": 5}
    d = summary["dialogue"]
    assert d["turns_per_dialogue"]["min"] == 4 and d["turns_per_dialogue"]["max"] == 6  # "" + opener + 4
    assert d["chars_per_turn"]["min"] == 0 and d["chars_per_turn"]["max"] > 20  # the empty opening user turn
    assert len(d["examples"]) == 3 and all(ex["turns"] for ex in d["examples"])
    human = cli("data", "show", prepared)
    assert human.code == 0 and "turns per dialogue" in human.out and "assistant:" in human.out
    assert sorted(p.name for p in (prepared / "hf" / "train").iterdir()) == [
        "data-00000-of-00001.arrow", "dataset_info.json", "state.json"]  # show wrote nothing into the folder


def test_the_shared_sgd_file_prepares_whole(cli, tmp_path: Path):
    source = find_shared("dialogue", (SGD_FILE,)) / SGD_FILE
    manifest = prepare(cli, source, tmp_path / "sgd", "--test-fraction", "0.1")
    assert manifest["format"] == "dialogue"
    assert manifest["counts"] == {"train": {"examples": 1888}, "test": {"examples": 210}}
    assert manifest["info"]["dialogues"] == 2098 and manifest["info"]["turns"] == 38768


# -- bad input ------------------------------------------------------------------------------------

def not_json(tmp: Path) -> tuple[Path, str]:
    path = sgd_file(tmp / "a.jsonl", 3)
    path.write_text(path.read_text() + "{oops\n")
    return path, f"{path}:4: line 4 is not JSON"


def no_turns(tmp: Path) -> tuple[Path, str]:
    path = sgd_file(tmp / "b.jsonl", 3)
    path.write_text(path.read_text() + "\n" + json.dumps({"dialogue_id": "x", "services": []}) + "\n")
    return path, f"{path}:5: record has no turns"


def empty(tmp: Path) -> tuple[Path, str]:
    path = tmp / "c.jsonl"
    path.write_text("")
    return path, f"{path}: empty file"


def blank(tmp: Path) -> tuple[Path, str]:
    path = tmp / "d.jsonl"
    path.write_text("\n\n")
    return path, f"{path}: no dialogues"


def bad_speaker(tmp: Path) -> tuple[Path, str]:
    path = tmp / "e.jsonl"
    path.write_text(json.dumps({"turns": [{"speaker": "BOT", "utterance": "hi"}]}) + "\n")
    return path, f"{path}:1: turn 1 has speaker 'BOT'"


@pytest.mark.parametrize("case", [not_json, no_turns, empty, blank, bad_speaker])
def test_bad_dialogues_are_one_line_naming_file_and_line(cli, tmp_path: Path, case):
    source, needle = case(tmp_path)
    result = cli("data", "prepare", source, "--out", tmp_path / "out", "--format", "dialogue")
    lines = error_lines(result.err.split("\n", 1)[1] if result.err.startswith("prepare") else result.err)
    assert result.code == 2 and len(lines) == 1 and needle in lines[0], result.err  # after the progress line
    assert "Traceback" not in result.err and not (tmp_path / "out").exists() and no_leftovers(tmp_path)


def test_dialogues_are_no_classification_dataset(prepared: Path):
    with pytest.raises(UserError, match="prepared dialogues have no labels"):
        load_dataset(str(prepared))
    with pytest.raises(UserError, match="takes no options"):
        load_corpus(load_recipe("chat-ssm", [f"data.name={prepared}", "data.options.language=english"]))


# -- language models ------------------------------------------------------------------------------

def test_a_prepared_dialogue_folder_renders_with_the_chat_template(prepared: Path):
    corpus = load_corpus(load_recipe("chat-ssm", [f"data.name={prepared}"]))
    assert corpus.chat == CHAT_TEMPLATE and corpus.info["dialogues_train"] == 15
    assert corpus.val == "".join(render_dialogue(r["turns"]) for r in rows(prepared, "test"))
    assert corpus.train.startswith(CHAT_TEMPLATE["user"]) and corpus.train.count("<|endoftext|>") == 15


def test_a_prepared_text_folder_is_a_plain_corpus(cli, tmp_path: Path):
    source = tmp_path / "lines.txt"
    source.write_text("".join(f"line number {i} of plain text\n" for i in range(40)))
    prepare(cli, source, tmp_path / "txt")
    corpus = load_corpus(load_recipe("small-ssm", [f"data.name={tmp_path / 'txt'}"]))
    assert corpus.chat is None and corpus.train.count("\n") == 32 and corpus.val.count("\n") == 8
    assert "line number 0 of plain text\n" in corpus.train + corpus.val


def test_tiny_model_on_prepared_dialogues_chats_in_dialogue_mode(cli, prepared: Path, tmp_path: Path):
    from snnctl.lm.bundle import load_lm
    from snnctl.training.trainer import train

    recipe = load_recipe("chat-ssm", [*TINY_SSM, f"data.name={prepared}", "lm.seq_len=16"])
    bundle = load_lm(train(recipe, tmp_path / "bundle").out)
    assert bundle.chat["mode"] == "dialogue" and bundle.chat["template"] == CHAT_TEMPLATE
    assert bundle.chat["trained_on"].startswith("dlg ")
    result = cli("chat", tmp_path / "bundle", "--prompt", "A table for two?", "--json", "--max-tokens", "6",
                 "--seed", "0")
    assert result.code == 0, result.err


def test_sgd_builtin_prepares_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SNNCTL_HOME", str(tmp_path / "home"))
    sgd_file(tmp_path / "shared" / SGD_FILE)
    corpus = load_dataset("sgd", test_fraction=0.25, split_seed=0, path=str(tmp_path / "shared"))
    assert corpus.name == "sgd" and corpus.chat == CHAT_TEMPLATE and corpus.info["dialogues_val"] == 5
    cache = tmp_path / "home" / "cache" / "datasets" / "sgd-test0.25-seed0"
    manifest = json.loads((cache / MANIFEST).read_text())
    assert manifest["format"] == "dialogue" and manifest["split"]["test_fraction"] == 0.25
    stamp = (cache / MANIFEST).stat().st_mtime_ns
    again = load_dataset("sgd", test_fraction=0.25, split_seed=0, path=str(tmp_path / "shared"))
    assert again == corpus and (cache / MANIFEST).stat().st_mtime_ns == stamp  # prepared once
    other = load_dataset("sgd", test_fraction=0.5, split_seed=0, path=str(tmp_path / "shared"))
    assert other.info["dialogues_val"] == 10 and (cache / MANIFEST).stat().st_mtime_ns == stamp
