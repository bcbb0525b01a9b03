"""A third-party package (tests/fixtures/snnctl-hello, the one README "Plugins" quotes) adds one plugin
to every entry-point group by declaring entry points, nothing else; each is exercised from outside."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snnctl import registry

FIXTURE = Path(__file__).parent / "fixtures" / "snnctl-hello"
BENCH_CLASH = "command 'bench' is provided by snnctl and snnctl-hello; using snnctl's"
# The groups snnctl-hello has a plugin in: every one.
COVERED = ("commands", "models", "neurons", "datasets", "targets", "recipes", "bundles", "tasks")
RECIPE_CLASH = "recipe file 'digits-snn' is provided by snnctl and snnctl-hello; using snnctl's"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    source = tmp_path_factory.mktemp("src") / "snnctl-hello"
    shutil.copytree(FIXTURE, source)  # pip builds in the source folder: keep the fixture clean
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    return {**os.environ, "PYTHONPATH": str(target)}


def snnctl(env: dict[str, str], *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snnctl", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def errors_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The stderr lines that are not the clash warnings every run of this environment prints."""
    return [line for line in done.stderr.splitlines() if "snnctl: warning:" not in line]


def test_every_group_lists_the_plugin_and_each_clash(plugin_env: dict[str, str]):
    listed = snnctl(plugin_env, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    used = {(r["kind"], r["name"]): r["package"] for r in rows if r["used"]}
    for kind, name in [("command", "hello"), ("model", "tiny"), ("model", "tiny-lm"), ("neuron", "gain-lif"),
                       ("dataset", "blobs"), ("target", "echo"), ("recipe", "hello"), ("bundle", "hello"),
                       ("task", "smooth")]:
        assert used[(kind, name)] == "snnctl-hello", (kind, name)
    assert {g.rstrip("s") for g in registry.GROUPS} <= {r["kind"] for r in rows}
    assert used[("command", "bench")] == "snnctl" and used[("recipe file", "digits-snn")] == "snnctl"
    ignored = {(r["kind"], r["name"], r["package"]): r["clash"] for r in rows if not r["used"]}
    assert ignored == {("command", "bench", "snnctl-hello"): BENCH_CLASH,
                       ("recipe file", "digits-snn", "snnctl-hello"): RECIPE_CLASH}
    table = snnctl({**plugin_env, "COLUMNS": "400"}, "plugins")
    assert table.returncode == 0 and BENCH_CLASH in table.stdout and RECIPE_CLASH in table.stdout


def test_command_runs_and_a_clashing_one_loses_to_the_builtin_with_one_warning(plugin_env: dict[str, str]):
    hello = snnctl(plugin_env, "hello", "--name", "spikes")
    assert hello.returncode == 0 and hello.stdout.strip() == "hello, spikes"
    bench = snnctl(plugin_env, "bench", "--help")
    assert bench.returncode == 0 and "--baseline" in bench.stdout and "the plugin's bench" not in bench.stdout
    assert bench.stderr.count(BENCH_CLASH) == 1


def test_recipe_folder_is_found_and_a_clashing_name_keeps_the_builtin(plugin_env: dict[str, str]):
    shown = snnctl(plugin_env, "recipes", "show", "digits-snn")
    assert shown.returncode == 0, shown.stderr
    assert "never shadow" not in shown.stdout and 'name = "cnn"' in shown.stdout.replace("'", '"')
    assert shown.stderr.count(RECIPE_CLASH) == 1
    listed = snnctl(plugin_env, "recipes", "list")
    assert "hello-snn" in listed.stdout


def test_plugin_model_neuron_dataset_train_and_a_plugin_target_compiles(plugin_env: dict[str, str], tmp_path: Path):
    out = tmp_path / "hello"
    done = snnctl(plugin_env, "train", "--recipe", "hello-snn", "--out", out, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "snn"
    manifest = json.loads((out / "snnctl.json").read_text())
    assert manifest["zoo"]["name"] == "tiny" and manifest["recipe"]["data"]["name"] == "blobs"
    assert manifest["neuron"]["type"] == "gain-lif" and manifest["neuron"]["gain"] == 2.0
    compiled = snnctl(plugin_env, "compile", out, "--target", "echo", "--out", tmp_path / "echo")
    assert compiled.returncode == 0, compiled.stderr  # the result table copes with a target's own report
    assert "echo.json" in compiled.stdout and errors_of(compiled) == []
    assert json.loads((tmp_path / "echo" / "echo.json").read_text()) == {"kind": "snn", "zoo": "tiny"}
    refused = snnctl(plugin_env, "convert", "cnn", "--dataset", "digits", "--target", "echo", "--out",
                     tmp_path / "conv")
    assert refused.returncode == 2 and "does not take converted SNNs" in refused.stderr


@pytest.mark.parametrize(("setting", "needles"), [
    ("neuron.gain=-1", ["neuron.gain", "greater than 0"]),
    ("neuron.levels=3", ["neuron.levels: unknown key", "gain"]),
])
def test_plugin_neuron_parameters_are_validated_from_the_recipe(plugin_env: dict[str, str], tmp_path: Path,
                                                                setting: str, needles: list[str]):
    done = snnctl(plugin_env, "train", "--recipe", "hello-snn", "--set", setting, "--out", tmp_path / "bad")
    lines = errors_of(done)
    assert done.returncode == 2 and len(lines) == 1 and "hello-snn.toml" in lines[0], done.stderr
    assert all(n in lines[0] for n in needles), lines
    assert not (tmp_path / "bad").exists()


def test_plugin_classifier_trains_on_a_builtin_recipe(plugin_env: dict[str, str], tmp_path: Path):
    out = tmp_path / "tiny"
    done = snnctl(plugin_env, "train", "--recipe", "digits-snn", "--set", "model.name=tiny",
                  "--set", "model.config={}", "--set", "train.epochs=1", "--out", out, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "snn"
    assert json.loads((out / "snnctl.json").read_text())["zoo"]["name"] == "tiny"


def test_plugin_language_model_declares_its_task_and_trains(plugin_env: dict[str, str], tmp_path: Path):
    out = tmp_path / "lm"
    done = snnctl(plugin_env, "train", "--recipe", "small-ssm", "--set", "model.name=tiny-lm",
                  "--set", "model.config={}", "--set", "model.kind=ann", "--set", "lm.steps=2",
                  "--set", "lm.seq_len=16", "--set", "lm.eval_windows=1", "--set", "train.batch_size=2",
                  "--set", "train.warmup_steps=0", "--out", out, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "snnctl.json").read_text())["zoo"]["name"] == "tiny-lm"
    wrong = snnctl(plugin_env, "train", "--recipe", "digits-snn", "--set", "model.name=tiny-lm",
                   "--out", tmp_path / "wrong")
    assert wrong.returncode == 2 and "is a language model" in wrong.stderr


def weight_norm(bundle: Path) -> float:
    from safetensors.torch import load_file

    return sum(float(t.pow(2).sum()) for k, t in load_file(bundle / "model.safetensors").items() if "weight" in k)


def test_plugin_task_brings_its_own_recipe_schema_and_trains(plugin_env: dict[str, str], tmp_path: Path):
    """`smooth` (a classifier plus a squared-weights penalty) trains through snnctl's loop; its [smooth]
    table is validated by its own schema and means nothing to the built-in tasks."""
    runs = {}
    for weight in (0.0, 1.0):
        out = runs[weight] = tmp_path / f"smooth-{weight}"
        done = snnctl(plugin_env, "train", "--recipe", "hello-smooth", "--set", f"smooth.weight={weight}",
                      "--out", out, "--json")
        assert done.returncode == 0, done.stderr
    recorded = json.loads((runs[1.0] / "snnctl.json").read_text())["recipe"]
    assert recorded["task"] == "smooth" and recorded["smooth"] == {"weight": 1.0}
    assert weight_norm(runs[1.0]) < 0.97 * weight_norm(runs[0.0])  # the penalty is the task's own term
    bad = snnctl(plugin_env, "train", "--recipe", "hello-smooth", "--set", "smooth.weight=-1",
                 "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "smooth.weight" in errors_of(bad)[0] and not (tmp_path / "bad").exists()
    foreign = snnctl(plugin_env, "recipes", "show", "digits-snn", "--set", "smooth.weight=1")
    assert foreign.returncode == 2 and "no such key in a recipe of task 'classify'" in errors_of(foreign)[0]


def test_plugin_bundle_kind_loads_through_its_own_loader(plugin_env: dict[str, str], tmp_path: Path):
    script = (
        "import sys, torch\n"
        "from snnctl.artifact import load_bundle, make_manifest, save_bundle\n"
        "from snnctl.zoo import build_network\n"
        "model = build_network('tiny', {}, kind='ann')\n"
        "save_bundle(sys.argv[1], model, make_manifest(zoo_name='tiny', zoo_config={}, kind='hello'))\n"
        "b = load_bundle(sys.argv[1])\n"
        "same = all(torch.equal(a, c) for a, c in zip(model.state_dict().values(), b.model.state_dict().values()))\n"
        "print(b.manifest['kind'], b.model.greeted, same)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "b")], env=plugin_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hello", "True", "True"]


def test_plugin_absent_without_the_package():
    done = snnctl(dict(os.environ), "plugins", "--json")
    assert "hello" not in {r["name"] for r in json.loads(done.stdout)}
    assert "warning" not in done.stderr


def test_readme_plugins_section_quotes_the_installed_package():
    """README "Plugins" documents each contract with this very package: its quotes must stay its files."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Plugins\n"):readme.index("\n## ", readme.index("## Plugins\n") + 1)]
    pyproject = (FIXTURE / "pyproject.toml").read_text()
    for group in (registry.GROUPS[kind] for kind in COVERED):
        table = pyproject[pyproject.index(f'[project.entry-points."{group}"]'):].split("\n\n")[0]
        assert table in section, group
    source = (FIXTURE / "snnctl_hello" / "__init__.py").read_text()
    for start in ("class GainLIF(LIF):", '@builds("lm")', "def build_tiny(act", "def load_blobs(",
                  "@compile_target(", "@bundle_loader(", "class SmoothSection(Strict):"):
        block = source[source.index(start):].split("\n\n\n")[0]
        assert block in section, start
    for recipe in ("hello-snn.toml", "hello-smooth.toml"):
        assert (FIXTURE / "snnctl_hello_recipes" / recipe).read_text().strip() in section
