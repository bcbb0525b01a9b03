"""`snnctl robustify` and `snnctl bench --noise`: end to end on a small binarised-digits SNN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snnctl.artifact import load_bundle
from tests.conftest import error_lines


@pytest.fixture(scope="module")
def robust(binary_snn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from snnctl.cli import run

    out = tmp_path_factory.mktemp("robust") / "lg"
    code = run([
        "robustify", str(binary_snn), "--dataset", "digits", "--noise", "0:0.3", "--logic-gated",
        "--epochs", "2", "--out", str(out), "--json",
    ])
    assert code == 0
    return out


def test_robustify_writes_a_logic_gated_bundle_with_its_noise_record(robust: Path, binary_snn: Path) -> None:
    bundle = load_bundle(robust)
    m = bundle.manifest
    assert m["logic_gated"] is True and m["parent"] == str(binary_snn)
    assert m["recipe"]["data"]["augment"] == {"noise": "bitflip", "range": [0.0, 0.3], "ramp": 0.5}
    assert m["robust"]["noise_model"] == "bitflip" and len(m["robust"]["curve"]) == 6
    assert m["metrics"]["test_acc"] == pytest.approx(m["metrics"]["test_acc_before_packing"], abs=0.006)
    assert m["metrics"]["test_acc"] > 0.5
    assert not list(bundle.model.parameters())  # all weights are packed ternary buffers


def test_bench_reports_no_multiplications_and_packed_size(cli, robust: Path, binary_snn: Path) -> None:
    result = cli("bench", robust, "--dataset", "digits", "--baseline", binary_snn, "--latency-samples", "3",
                 "--json")
    assert result.code == 0, result.err
    model, base = json.loads(result.out)["model"], json.loads(result.out)["baseline"]
    assert model["logic_gated"] and model["synaptic_multiplications"] == 0 and model["sops"] > 0
    assert model["params"] == base["params"]
    # 2 bits per weight against 32 (biases stay float32, and each file has a small header)
    assert model["size_bytes"] * 8 < base["size_bytes"] and base["size_bytes"] >= model["size_float32_bytes"]


def test_bench_noise_curve_writes_json_and_png_and_hits_chance_at_half(cli, robust, binary_snn, tmp_path) -> None:
    result = cli("bench", robust, "--dataset", "digits", "--baseline", binary_snn, "--latency-samples", "2",
                 "--noise", "0,0.5", "--noise-repeats", "4", "--out", tmp_path / "n", "--json")
    assert result.code == 0, result.err
    noise = json.loads(result.out)["noise"]
    assert noise["noise_model"] == "bitflip"
    png = (tmp_path / "n" / "noise.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "n" / "noise.json").read_text())["table"] == noise["table"]
    for curve in noise["curves"].values():
        clean, half = curve[0]["accuracy"], curve[1]["accuracy"]
        assert clean > 0.5
        # at 50 % flips the input carries no information: chance, within the sampling interval
        assert abs(half - noise["chance"]) <= curve[1]["ci95"] + 0.02


def test_a_ternary_ann_is_robustified_packed_and_refused_by_convert(cli, tmp_path: Path) -> None:
    """The ternary ANN baseline: `robustify --logic-gated` of a ReLU MLP. Packing keeps its accuracy
    (the scales fold past ReLU to the readout), bench counts no multiplications, convert refuses it."""
    from snnctl.config import load_recipe
    from snnctl.training.trainer import train

    ann = train(load_recipe("digits-bin-ann", ["train.epochs=3", "model.config.hidden=[64, 64]"]), tmp_path / "a").out
    out = tmp_path / "lg"
    result = cli("robustify", ann, "--dataset", "digits", "--logic-gated", "--epochs", "2", "--out", out, "--json")
    assert result.code == 0, result.err
    m = load_bundle(out).manifest
    assert m["kind"] == "ann" and m["logic_gated"] is True
    assert m["metrics"]["test_acc"] == pytest.approx(m["metrics"]["test_acc_before_packing"], abs=0.006)
    assert m["metrics"]["test_acc"] > 0.5
    model = json.loads(cli("bench", out, "--dataset", "digits", "--latency-samples", "2", "--json").out)["model"]
    assert model["logic_gated"] and model["synaptic_multiplications"] == 0 and model["macs"] == 0
    result = cli("convert", out, "--dataset", "digits", "--out", tmp_path / "never")
    assert result.code == 2 and "logic-gated" in result.err and len(error_lines(result.err)) == 1
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--noise", "0:1.5"], "outside [0, 1]"),
        (["--noise-model", "pink"], "unknown noise model 'pink'"),
        (["--noise-model", "weight"], "evaluation model"),
    ],
)
def test_robustify_bad_noise_is_exit_2(cli, binary_snn: Path, tmp_path: Path, args, message) -> None:
    out = tmp_path / "never"
    result = cli("robustify", binary_snn, "--dataset", "digits", "--out", out, *args)
    assert result.code == 2 and message in result.err and len(error_lines(result.err)) == 1
    assert not out.exists()


def test_logic_gated_refuses_layers_by_name(cli, trained, tmp_path: Path) -> None:
    out = tmp_path / "never"
    result = cli("robustify", trained["snn"], "--dataset", "digits", "--logic-gated", "--noise-model",
                 "salt_pepper", "--out", out)
    assert result.code == 2 and "layer 1 (BatchNorm2d)" in result.err and len(error_lines(result.err)) == 1
    result = cli("robustify", trained["ann"], "--dataset", "digits", "--logic-gated", "--noise-model",
                 "salt_pepper", "--out", out)
    assert result.code == 2 and "layer 1 (BatchNorm2d)" in result.err and len(error_lines(result.err)) == 1
    result = cli("robustify", trained["snn"], "--dataset", "digits", "--out", out)
    assert result.code == 2 and "needs binary inputs" in result.err
    assert not out.exists()


def test_bitflip_reference_scores_are_the_flip_likelihood_by_hand() -> None:
    """One example per class: the score of a class is log mean_p p^h (1-p)^(D-h), h its Hamming distance."""
    import math

    import torch

    from snnctl.data import Dataset
    from snnctl.robust.reference import BitflipReference

    zeros, ones = torch.zeros(8), torch.ones(8)
    ds = Dataset("toy", torch.stack([zeros, ones]), torch.tensor([0, 1]), zeros[None], torch.tensor([0]), 2)
    ref = BitflipReference(ds, grid=4)
    x = torch.tensor([[1.0, 1, 0, 0, 0, 0, 0, 0], [1.0, 1, 1, 1, 1, 1, 0, 1]])
    ps = [0.0625, 0.1875, 0.3125, 0.4375]

    def by_hand(h: int) -> float:
        return math.log(sum(p**h * (1 - p) ** (8 - h) for p in ps) / len(ps))

    expected = torch.tensor([[by_hand(2), by_hand(6)], [by_hand(7), by_hand(1)]])
    assert torch.allclose(ref(x), expected, atol=1e-5)
    assert ref(x).argmax(1).tolist() == [0, 1]


def test_bitflip_reference_reads_clean_digits_and_is_at_chance_at_half() -> None:
    from snnctl.data import load_dataset
    from snnctl.robust.evaluate import chance_level, noise_curve
    from snnctl.robust.noise import NOISE_MODELS
    from snnctl.robust.reference import BitflipReference

    ds = load_dataset("digits", test_fraction=0.2, split_seed=0, binarize=True)
    clean, half = noise_curve(BitflipReference(ds), ds, NOISE_MODELS["bitflip"], [0.0, 0.5], repeats=3)
    assert clean["accuracy"] > 0.9
    assert abs(half["accuracy"] - chance_level(ds)) <= half["ci95"] + 0.02


def test_robustify_bad_out_or_device_is_refused_before_training(cli, binary_snn: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for args, words in [(("--out", a_file), "names an existing file"), (("--out", a_file / "sub"), "under a file"),
                        (("--out", binary_snn), "is the input bundle"), (("--device", "tpu"), "tpu")]:
        result = cli("robustify", binary_snn, "--dataset", "digits", *args)
        lines = error_lines(result.err)
        assert result.code == 2 and len(lines) == 1 and words in lines[0], result.err
    assert a_file.read_text() == "x" and not (tmp_path / f"{binary_snn.name}-robust").exists()
