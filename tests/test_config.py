"""Recipes (extends, --set, validation errors) and settings (env vars, snnctl.toml)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from snnctl.config import available_recipes, load_recipe, parse_override
from snnctl.errors import UserError
from snnctl.settings import Settings, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_builtin_recipes_are_found():
    assert {"digits-ann", "digits-snn"} <= set(available_recipes())


def test_extends_merges_parent_tables_key_by_key():
    snn = load_recipe("digits-snn")
    assert snn.model.kind == "snn"  # from the child
    assert snn.model.name == "cnn"  # from the parent
    assert snn.model.config["channels"] == [16, 32, 64]
    assert snn.train.lr == pytest.approx(3e-3)
    assert snn.extends == "digits-ann"


def test_extends_with_another_model_starts_its_config_afresh(tmp_path: Path):
    other = tmp_path / "other.toml"
    other.write_text('extends = "sst2-ssm-snn"\n[model]\nname = "spikeformer"\n[model.config]\nheads = 2\n')
    r = load_recipe(str(other))
    assert r.model.name == "spikeformer" and r.model.config == {"heads": 2}  # no d_state from textssm
    same = tmp_path / "same.toml"
    same.write_text('extends = "sst2-ssm-snn"\n[model.config]\nn_layers = 1\n')
    kept = load_recipe(str(same))
    assert kept.model.config["n_layers"] == 1 and "d_state" in kept.model.config  # same model: merged


def test_set_overrides_typed_values_and_free_form_tables():
    r = load_recipe("digits-snn", ["train.lr=1e-4", "encoding.T=8", "model.config.channels=[8, 8]",
                                   "neuron.surrogate=sigmoid"])
    assert r.train.lr == pytest.approx(1e-4)
    assert r.encoding.T == 8
    assert r.model.config["channels"] == [8, 8]
    assert r.neuron.surrogate == "sigmoid"


def test_parse_override_falls_back_to_strings():
    assert parse_override("neuron.type=alif") == (["neuron", "type"], "alif")
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)


def test_set_on_a_missing_key_names_it_and_lists_the_real_ones():
    with pytest.raises(UserError) as err:
        load_recipe("digits-snn", ["train.lrr=1"])
    assert "train.lrr" in err.value.line() and "lr" in err.value.hint


def test_mistyped_key_in_a_file_names_file_key_and_expected(tmp_path: Path):
    path = write(tmp_path / "r.toml", '[model]\nname = "mlp"\n[train]\nepochz = 3\n')
    with pytest.raises(UserError) as err:
        load_recipe(str(path))
    line = err.value.line()
    assert str(path) in line and "train.epochz: unknown key" in line and "epochs" in line


def test_wrong_type_names_the_key_path(tmp_path: Path):
    path = write(tmp_path / "r.toml", '[model]\nname = "mlp"\n[train]\nepochs = "many"\n')
    with pytest.raises(UserError, match=r"train\.epochs"):
        load_recipe(str(path))


def test_extends_a_file_and_detects_loops(tmp_path: Path):
    write(tmp_path / "base.toml", '[model]\nname = "mlp"\nkind = "ann"\n')
    child = write(tmp_path / "child.toml", 'extends = "base.toml"\n[train]\nepochs = 2\n')
    r = load_recipe(str(child))
    assert (r.model.name, r.train.epochs) == ("mlp", 2)
    write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(UserError, match="loop"):
        load_recipe(str(tmp_path / "a.toml"))


def test_invalid_toml_names_the_file(tmp_path: Path):
    path = write(tmp_path / "bad.toml", "[model\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_recipe(str(path))


def test_unknown_recipe_lists_the_available_ones():
    with pytest.raises(UserError) as err:
        load_recipe("no-such-recipe")
    assert "digits-snn" in err.value.hint


def test_settings_from_env_override_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = write(tmp_path / "snnctl.toml", 'device = "cpu"\nthreads = 3\nlog_level = "info"\n')
    monkeypatch.setenv("SNNCTL_CONFIG", str(cfg))
    monkeypatch.setenv("SNNCTL_THREADS", "1")
    s = Settings()
    assert (s.device, s.threads, s.log_level) == ("cpu", 1, "info")
    assert s.cache == s.home.expanduser() / "cache"


def test_bad_settings_are_a_user_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SNNCTL_THREADS", "zero")
    with pytest.raises(UserError, match="threads"):
        load_settings()


def test_log_level_sets_the_level_of_snnctls_loggers(monkeypatch: pytest.MonkeyPatch):
    import logging

    from snnctl.config import prepare_runtime

    monkeypatch.setenv("SNNCTL_LOG_LEVEL", "debug")
    prepare_runtime("cpu")
    assert logging.getLogger("snnctl.training.loop").getEffectiveLevel() == logging.DEBUG
    monkeypatch.setenv("SNNCTL_LOG_LEVEL", "warning")
    prepare_runtime("cpu")
    assert logging.getLogger("snnctl.training.loop").getEffectiveLevel() == logging.WARNING


@pytest.mark.parametrize("name", ["tpu", "cpu:0", "cuda:x", "", "cuda:99"])
def test_devices_torch_or_this_machine_lacks_are_user_errors(name: str):
    from snnctl.config import resolve_device

    with pytest.raises(UserError, match="device"):
        resolve_device(name)


def test_word_lists_come_from_their_registries():
    from snnctl.data.encoders import ENCODINGS
    from snnctl.robust.noise import NOISE_MODELS

    for encoding in ENCODINGS:
        assert load_recipe("digits-snn", [f"encoding.type={encoding}"]).encoding.type == encoding
    with pytest.raises(UserError, match=re.escape("expected one of: " + ", ".join(ENCODINGS))):
        load_recipe("digits-snn", ["encoding.type=morse"])
    noise = next(n for n in NOISE_MODELS if n != "weight")
    assert load_recipe("digits-snn", [f"data.augment.noise={noise}"]).data.augment.noise == noise
    with pytest.raises(UserError, match=r"data\.augment\.noise"):
        load_recipe("digits-snn", ["data.augment.noise=weight"])


def test_old_recipes_get_their_task_from_the_lm_table(tmp_path: Path):
    text = '[model]\nname = "spiking-ssm"\n[data]\nname = "tinyshakespeare"\n[lm]\nsteps = 3\n'
    lm = write(tmp_path / "lm.toml", text)
    assert load_recipe(str(lm)).task == "lm"
    with pytest.raises(UserError, match=r"train\.epochs: unknown key"):
        write(tmp_path / "bad.toml", lm.read_text() + "[train]\nepochs = 3\n")
        load_recipe(str(tmp_path / "bad.toml"))
    with pytest.raises(UserError, match="task: expected one of classify, lm"):
        load_recipe(str(lm), ["task=distill"])
