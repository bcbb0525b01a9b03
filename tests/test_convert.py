"""ANN-to-SNN conversion: op coverage, exactness of the rewrite, thresholds, bundles, CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnctl.conversion import calibrate as K
from snnctl.conversion import convert as C
from snnctl.conversion.graph import neurons, rewrite
from snnctl.conversion.neuron import AnalogOp, Converted, RateMaxPool
from snnctl.errors import UserError
from snnctl.nn.qcfs import QCFS
from snnctl.zoo import Network


class EveryReLU(nn.Module):
    """One of each ReLU-like spelling users write."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.ModuleList(nn.Linear(6, 6) for _ in range(8))
        self.relu, self.relu6, self.hardtanh = nn.ReLU(), nn.ReLU6(), nn.Hardtanh(0.0, 3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fc
        x = self.relu(f[0](x))
        x = F.relu(f[1](x))
        x = torch.relu(f[2](x))
        x = torch.clamp(f[3](x), min=0)
        x = f[4](x).relu()
        x = self.relu6(f[5](x))
        x = self.hardtanh(f[6](x))
        return f[7](x).clamp_min(0)


def test_every_relu_spelling_is_converted_and_the_analog_graph_is_the_ann():
    torch.manual_seed(0)
    model = EveryReLU().eval()
    gm, report = rewrite(model)
    assert len(report.converted) == 8 and not report.unsupported
    ops = {n.analog_op.kind for _, n in neurons(gm)}
    assert ops == {"relu", "clip"}
    x = torch.randn(5, 6)
    with torch.no_grad(), C.analog(gm):
        assert torch.equal(gm(x), model(x))


def test_shared_relu_module_gets_one_neuron_per_call():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.relu = nn.Linear(4, 3), nn.Linear(3, 5), nn.ReLU()

        def forward(self, x):
            return self.relu(self.b(self.relu(self.a(x))))

    gm, _ = rewrite(Shared().eval())
    found = neurons(gm)
    assert len(found) == 2 and found[0][1] is not found[1][1]


def test_batchnorm_is_folded_and_outputs_are_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model.eval()
    gm, report = rewrite(model)
    assert report.folded == ["1 -> 0"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gm.modules())
    x = torch.randn(3, 1, 6, 6)
    with torch.no_grad(), C.analog(gm):
        torch.testing.assert_close(gm(x), model(x))


def test_unsupported_op_stops_with_its_name_unless_partial():
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.sigmoid(F.relu(self.fc(x)))

    with pytest.raises(UserError) as err:
        rewrite(Gated().eval())
    assert "torch.sigmoid" in err.value.what and "non-linear op on spikes" in err.value.what
    assert "test_convert.py" in (err.value.where or "")
    _, report = rewrite(Gated().eval(), allow_partial=True)
    assert [r["op"] for r in report.unsupported] == ["torch.sigmoid"]


def test_untraceable_model_names_the_users_line():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return F.relu(self.fc(x))
            return self.fc(x)

    with pytest.raises(UserError) as err:
        rewrite(Branchy().eval())
    assert "torch.fx cannot trace" in err.value.what
    assert "test_convert.py" in err.value.where and "if x.sum() > 0" in err.value.where


def test_max_pool_moves_before_the_neuron_and_pools_by_running_rate():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2)).eval()
    gm, report = rewrite(model)
    assert report.moved and any(isinstance(m, RateMaxPool) for m in gm.modules())
    # Two inputs in one window: a steady 0.5 and a flickering 1, 0, 0, 0 (mean 0.25). Per-step max
    # would pass 0.625 on average; pooling by running sums settles on the steady input.
    pool = RateMaxPool(nn.MaxPool2d((1, 2)))
    T = 400
    flicker = torch.tensor([1.0, 0, 0, 0]).repeat(T // 4)
    x = torch.stack([torch.full((T,), 0.5), flicker], dim=-1).reshape(T, 1, 1, 2)
    pool.T = T
    out = pool(x).reshape(T)
    assert abs(float(out.mean()) - 0.5) < 0.01


def test_converted_neuron_rate_approaches_relu_and_thresholds_are_per_channel():
    n = Converted(AnalogOp("relu"))
    n.theta = torch.tensor([1.0, 2.0])
    x = torch.tensor([[0.3, 1.2], [-0.5, 5.0]])
    T = 200
    n.act.T = T
    rate = n(x.repeat(T, 1)).reshape(T, 2, 2).mean(0)
    expected = torch.tensor([[0.3, 1.2], [0.0, 2.0]])  # clipped at theta
    assert torch.allclose(rate, expected, atol=0.01)


@pytest.mark.parametrize("levels", [2, 4])
def test_qcfs_converts_exactly_at_T_equal_L_and_graded_at_T_1(levels):
    """One QCFS layer on a constant input: the IF neuron with v0 = theta/2 over T = L steps, and the
    graded neuron in one step, give exactly the quantised ANN activation."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), QCFS(levels, init=2.0), nn.Linear(7, 3)).eval()
    x = torch.randn(64, 5)
    with torch.no_grad():
        ann = model(x)
    for method, T in (("qcfs", levels), ("graded", 1)):
        gm, _ = C.convert(model, C.Options(method=method), None)
        net = Network(gm, kind="converted", T=T).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x), ann, atol=1e-5, rtol=1e-5)


def test_methods_that_need_data_say_which_flag_to_add():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with pytest.raises(UserError, match="--dataset"):
        C.convert(model, C.Options(method="rate"), None)
    with pytest.raises(UserError, match="QCFS"):
        C.convert(model, C.Options(method="qcfs"), torch.randn(8, 3))


def test_accuracy_by_T_prefixes_equal_separate_runs(trained):
    from snnctl.conversion.source import resolve
    from snnctl.data import load_dataset

    ds = load_dataset("digits")
    gm, _ = C.convert(resolve(str(trained["ann"])).body, C.Options(), ds.x_train[:128])
    net = Network(gm, kind="converted", T=4)
    table = C.accuracy_by_T(net, ds.x_test, ds.y_test, (2, 4))
    for T in (2, 4):
        net.T = T
        direct = float((net(ds.x_test).argmax(-1) == ds.y_test).float().mean())
        assert table[T] == pytest.approx(direct)


def test_convert_cli_writes_a_bundle_that_round_trips(cli, trained, tmp_path):
    from snnctl.artifact import load_bundle
    from snnctl.data import load_dataset

    out = tmp_path / "snn"
    r = cli("convert", trained["ann"], "--dataset", "digits", "--T", "8", "--out", out, "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert set(summary["acc_by_T"]) == {"1", "2", "4", "8", "16", "32"}
    assert summary["report"]["converted"] == 2 and summary["report"]["unsupported"] == 0
    assert "Conversion report" in r.err  # always printed (stderr under --json)
    b = load_bundle(out)
    assert b.manifest["kind"] == "converted" and b.manifest["parent"] == str(trained["ann"])
    thetas = [n.theta for _, n in neurons(b.model)]
    assert all(t.numel() > 1 for t in thetas)  # per-channel thresholds survived save/load
    x = load_dataset("digits").x_test[:16]
    reconverted = cli("convert", trained["ann"], "--dataset", "digits", "--T", "8", "--out", tmp_path / "again")
    assert reconverted.code == 0
    with torch.no_grad():
        assert torch.equal(b.model(x), load_bundle(tmp_path / "again").model(x))


def test_convert_cli_bad_input_exits_2_and_writes_nothing(cli, trained, tmp_path):
    out = tmp_path / "never"
    for args, words in [
        ((trained["snn"], "--dataset", "digits"), "already an SNN"),
        (("cnn", "--out", out), "add --dataset"),
        (("cnn", "--dataset", "digits", "--target", "nosuch", "--out", out), "compile target 'nosuch'"),
        (("cnn", "--dataset", "digits", "--target", "lava", "--out", out), "does not take converted SNNs"),
        (("nope",), "unknown model 'nope'"),
        (("cnn", "--dataset", "digits", "--method", "spiky", "--out", out), "unknown method"),
    ]:
        r = cli("convert", *args)
        assert r.code == 2, (args, r.err)
        assert words in r.err and "Traceback" not in r.err
    assert not out.exists()


def test_random_init_is_reported(cli, tmp_path):
    r = cli("convert", "mlp", "--dataset", "digits", "--T", "2", "--out", tmp_path / "m", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["weights"] == "random init (no --weights given)"


def test_calibrate_cli_logs_each_stage(cli, trained, tmp_path):
    from snnctl.artifact import load_bundle

    conv = tmp_path / "conv"
    assert cli("convert", trained["ann"], "--dataset", "digits", "--T", "4", "--out", conv).code == 0
    r = cli("calibrate", conv, "--dataset", "digits", "--stages", "threshold,bias,potential,delay",
            "--calibration-samples", "128", "--out", tmp_path / "cal", "--json")
    assert r.code == 0, r.err
    stages = json.loads(r.out)["stages"]
    assert [s["stage"] for s in stages] == ["threshold", "bias", "potential", "delay"]
    assert all({"acc_before", "acc_after", "kept"} <= set(s) for s in stages)
    cal = load_bundle(tmp_path / "cal")
    assert cal.manifest["parent"] == str(conv) and cal.manifest["conversion"]["calibration"]
    assert cli("calibrate", trained["ann"], "--dataset", "digits").code == 2
    assert cli("calibrate", conv, "--dataset", "digits", "--stages", "magic").code == 2


def test_bias_correction_closes_the_mean_gap():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.randn(256, 8)
    gm, _ = C.convert(model, C.Options(), x)
    net = Network(gm, kind="converted", T=4)
    (_, neuron), = neurons(gm)

    def gap() -> float:
        with torch.no_grad():
            z = getattr(gm, "0")(x)
            neuron.act.T = 4
            rate = neuron(z.repeat(4, 1)).reshape(4, 256, 16).mean(0)
        ann = z.relu()
        return float((ann - rate).mean(0).abs().mean())

    before = gap()
    K.layerwise(net, x, K.correct_bias)
    assert gap() < before / 2


def test_hseo_reports_every_generation_and_keeps_the_budget(trained):
    from snnctl.conversion.source import resolve
    from snnctl.data import load_dataset

    ds = load_dataset("digits")
    gm, _ = C.convert(resolve(str(trained["ann"])).body, C.Options(), ds.x_train[:128])
    net = Network(gm, kind="converted", T=4)
    data = K.Data(ds.x_train[:128], ds.y_train[:128], ds.x_test[:64], ds.y_test[:64])
    budget = C.spikes_per_sample(net, data.x_cal, 4)
    seen = []
    result = K.hseo(net, data, population=4, generations=3, budget=budget, on_generation=lambda g, b: seen.append(g))
    assert seen == [1, 2, 3] and len(result["history"]) == 3
    best = result["best"]
    assert best["T"] in (2, 4)
    assert C.spikes_per_sample(net, data.x_cal, net.T) == pytest.approx(best["spikes_per_sample"], rel=1e-4)


def test_converted_model_streams_like_it_runs_in_batch(trained):
    from snnctl.conversion.source import resolve
    from snnctl.data import load_dataset
    from snnctl.data.encoders import encode
    from snnctl.nn.events import Streamer

    ds = load_dataset("digits")
    gm, _ = C.convert(resolve(str(trained["ann"])).body, C.Options(), ds.x_train[:64])
    net = Network(gm, kind="converted", T=6).eval()
    x = ds.x_test[:1]
    with torch.no_grad():
        batch = net.forward_sequence(encode(x, 6, "direct"))
        streamed = Streamer(net).run(encode(x, 6, "direct"))
    torch.testing.assert_close(streamed, batch, atol=1e-5, rtol=1e-5)


def test_hugging_face_resnet_from_a_local_folder(cli, tmp_path):
    transformers = pytest.importorskip("transformers")
    from snnctl.artifact import load_bundle
    from snnctl.conversion.source import resolve

    cfg = transformers.ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                    layer_type="basic", num_labels=10)
    torch.manual_seed(0)
    hf = transformers.ResNetForImageClassification(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    source = resolve(str(tmp_path / "hf"))
    gm, report = rewrite(source.body)
    assert len(report.folded) >= 5 and report.moved  # stem BN folded; stem max pool moved
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad(), C.analog(gm):
        torch.testing.assert_close(gm(x), hf(x).logits, atol=1e-5, rtol=1e-5)
    r = cli("convert", tmp_path / "hf", "--dataset", "digits", "--T", "2", "--out", tmp_path / "snn", "--json")
    assert r.code == 0, r.err
    assert load_bundle(tmp_path / "snn").manifest["zoo"]["name"] == "hf:ResNetForImageClassification"


def test_sst2_text_classifier_converts_with_its_embedding_as_input_stage(tmp_path):
    from snnctl.data import sst2

    try:
        ds = sst2.load(train_limit=2000, vocab_size=2000)
    except UserError:
        pytest.skip("../shared/data/sst2 is not on this machine")
    from snnctl.zoo import build_network

    net = build_network("textmlp", {"vocab_size": 2000, "hidden": [32]}, kind="ann")
    gm, report = C.convert(net.body, C.Options(), ds.x_train[:256])
    stages = {r["op"]: r["why"] for r in report.passed}
    assert stages["Embedding 'embed'"] == "input stage"
    snn = Network(gm, kind="converted", T=4)
    with torch.no_grad():
        assert snn(ds.x_test[:8]).shape == (8, 2)


def test_bench_counts_converted_synapses_as_accumulates(cli, trained, tmp_path):
    conv = tmp_path / "conv"
    assert cli("convert", trained["ann"], "--dataset", "digits", "--T", "4", "--out", conv).code == 0
    r = cli("bench", conv, "--dataset", "digits", "--json")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    text = json.dumps(result)
    assert "sops" in text.lower() or "synaptic" in text.lower()
    model = result.get("model", result)
    sops = [v for k, v in _walk(model) if "sop" in k.lower()]
    assert sops and max(sops) > 0


def _walk(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _walk(v, f"{prefix}.{k}")
    elif isinstance(d, (int, float)):
        yield prefix, d


def test_qcfs_recipe_option_trains_an_ann_with_qcfs(tmp_path):
    from snnctl.artifact import load_bundle
    from snnctl.config import load_recipe
    from snnctl.training.trainer import train

    recipe = load_recipe("digits-qcfs-ann", ["train.epochs=1", "model.config.channels=[4, 8]"])
    out = train(recipe, tmp_path / "q").out
    b = load_bundle(out)
    assert b.manifest["zoo"]["activation"] == {"type": "qcfs", "levels": 4}
    assert sum(isinstance(m, QCFS) for m in b.model.modules()) == 2


def test_path_is_not_a_model(cli, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    r = cli("convert", tmp_path / "empty")
    assert r.code == 2 and "not a model folder" in r.err


@pytest.mark.parametrize("method", ["rate", "graded"])
def test_convert_target_onnx_runs_end_to_end_with_exact_spikes(cli, trained, tmp_path, method):
    """`snnctl convert ... --target onnx`: per-channel thresholds, initial potentials and rate-gated
    max pooling (the digits CNN pools by max) survive the step graph and the Scan over time."""
    out = tmp_path / method
    r = cli("convert", trained["ann"], "--dataset", "digits", "--T", "4", "--method", method, "--out", out,
            "--target", "onnx", "--json")
    assert r.code == 0, r.err
    compiled = json.loads(r.out)["compiled"]
    trip = compiled["roundtrip"]
    assert trip["spike_agreement"] == 1.0 and trip["output_max_abs_diff"] < 1e-5
    assert trip["accuracy"]["compiled"] == trip["accuracy"]["reference"]
    assert trip["step_max_abs_diff_random_state"] < 1e-5 and len(trip["layers"]) >= 2
    assert (out / "compiled-onnx" / "model.seq.onnx").is_file()


def test_convert_target_loihi_runs_end_to_end_bit_exact_in_lava(cli, tmp_path):
    """`snnctl convert cnn --target loihi`: thresholds folded into 8-bit weights, reset by subtraction on
    Loihi's LIF, checked against PyTorch and, bit for bit, against lava fixed_pt."""
    out = tmp_path / "cnn"
    r = cli("convert", "cnn", "--set", "channels=[4, 8]", "--dataset", "digits", "--T", "4", "--out", out,
            "--target", "loihi", "--json")
    assert r.code == 0, r.err
    trip = json.loads(r.out)["compiled"]["roundtrip"]
    assert trip["lava_fixed_pt"]["bit_exact"] and trip["lava_fixed_pt"]["samples"] == 4
    assert trip["float_graph"]["spike_agreement"] >= 0.999 and trip["network_files_identical"]
    assert set(trip["accuracy"]) == {"reference", "compiled"}
    assert (out / "compiled-loihi" / "loihi_graph.json").is_file()
    assert (out / "compiled-loihi" / "loihi_weights.safetensors").is_file()


def _one_line_exit_2(r, *words: str) -> None:
    from tests.conftest import error_lines

    assert r.code == 2, r.err
    lines = error_lines(r.err)
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    for word in words:
        assert word in lines[0], lines[0]


def test_data_that_does_not_fit_the_ann_names_both_shapes(cli, trained, tmp_path):
    """A digits ANN with SST-2 (token ids): refused before converting, naming what each side has."""
    from snnctl.data import sst2

    try:
        sst2.load(train_limit=64, vocab_size=200)
    except UserError:
        pytest.skip("../shared/data/sst2 is not on this machine")
    out = tmp_path / "never"
    r = cli("convert", trained["ann"], "--dataset", "sst2", "--out", out)
    _one_line_exit_2(r, "float inputs of shape (1, ...", "sst2 gives token ids of shape")
    assert not out.exists()


def test_bad_out_is_refused_before_any_work(cli, trained, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, words in [(a_file, "names an existing file"), (a_file / "sub", "lies under a file"),
                       (Path("/proc/snnctl-test/out"), "not writable")]:
        if str(out).startswith("/proc") and not Path("/proc").is_dir():
            continue
        _one_line_exit_2(cli("convert", trained["ann"], "--dataset", "digits", "--out", out), "--out", *[words])
        _one_line_exit_2(cli("calibrate", trained["ann"], "--dataset", "digits", "--out", out), "not a converted")
    conv = tmp_path / "conv"
    assert cli("convert", trained["ann"], "--dataset", "digits", "--T", "2", "--out", conv).code == 0
    _one_line_exit_2(cli("calibrate", conv, "--dataset", "digits", "--out", a_file), "names an existing file")
    _one_line_exit_2(cli("calibrate", conv, "--dataset", "digits", "--out", conv), "is the input bundle")
    assert a_file.read_text() == "x"


def test_unknown_device_is_a_usage_error(cli, trained, tmp_path):
    for args in (("convert", trained["ann"], "--dataset", "digits"), ("calibrate", trained["ann"], "--dataset",
                 "digits"), ("bench", trained["ann"], "--dataset", "digits")):
        _one_line_exit_2(cli(*args, "--device", "tpu", "--out", tmp_path / "never"), "tpu")
    assert not (tmp_path / "never").exists()


def test_bench_on_a_text_corpus_is_a_usage_error(cli, trained):
    from snnctl.data import find_shared

    try:
        find_shared("tinyshakespeare", ("input.txt",))
    except UserError:
        pytest.skip("../shared/data/tinyshakespeare is not on this machine")
    _one_line_exit_2(cli("bench", trained["ann"], "--dataset", "tinyshakespeare"), "not a labelled classification")


def test_data_free_conversion_warns_and_records_it(cli, tmp_path):
    """No --dataset: thresholds from activations on uniform random inputs, said in a warning and the
    manifest; no accuracy is claimed."""
    from snnctl.artifact import load_bundle

    out = tmp_path / "cnn"
    r = cli("convert", "cnn", "--set", "channels=[4, 8]", "--input-shape", "1,8,8", "--T", "2", "--out", out,
            "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert "test_acc" not in summary and any("data-free" in w for w in summary["warnings"])
    assert any("untrained" in w for w in summary["warnings"]) and "accuracy is unmeasured" in r.err
    bundle = load_bundle(out)
    info = bundle.manifest["conversion"]
    assert info["data_free"] is True and info["calibration_samples"] == 0
    for _, neuron in neurons(bundle.model):  # no near-silent channel keeps a tiny threshold
        assert float(neuron.theta.min()) >= 0.05 * float(neuron.theta.median()) * (1 - 1e-6)
    _one_line_exit_2(cli("convert", "cnn", "--out", tmp_path / "never"), "add --dataset", "--input-shape")
    _one_line_exit_2(cli("convert", "cnn", "--input-shape", "3,x", "--out", tmp_path / "never"), "--input-shape")


def test_average_maxpool_is_reported_and_survives_reload(tmp_path):
    """--maxpool average swaps the ImageNet stem's max pooling for average pooling + ReLU: exactly the
    ANN with average pooling, listed as a replacement, rebuilt the same way on load."""
    from snnctl.zoo import build_network

    torch.manual_seed(0)
    net = build_network("resnet18", {"num_classes": 10, "width": 8}, kind="ann")
    gm, report = rewrite(net.body.eval(), maxpool="average")
    assert [r["op"] for r in report.replaced] == ["MaxPool2d '0.3'"] and not report.moved
    x = torch.rand(2, 3, 32, 32)
    net.body[0][3] = nn.AvgPool2d(3, 2, 1)
    with torch.no_grad(), C.analog(gm):
        torch.testing.assert_close(gm(x), net.body(x), atol=1e-5, rtol=1e-5)


def test_design_card_resnet18_to_loihi_runs_without_data(cli, tmp_path):
    """`snnctl convert resnet18 --target loihi` as on the design card (at 32x32 here to stay fast; the
    verbatim line uses the ImageNet stem's 224x224): data-free thresholds, the stem's max pooling
    replaced by average pooling, untrained weights said, compiled to Loihi."""
    out = tmp_path / "r18"
    r = cli("convert", "resnet18", "--target", "loihi", "--input-shape", "3,32,32", "--out", out, "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["report"]["replaced"] == 1 and summary["compiled"]["target"] == "loihi"
    assert any("untrained" in w for w in summary["warnings"])
    assert (out / "compiled-loihi" / "loihi_graph.json").is_file()


def test_bench_and_compile_refuse_a_bad_out_before_any_work(cli, trained, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, words in [(a_file, "names an existing file"), (a_file / "sub", "lies under a file")]:
        _one_line_exit_2(cli("bench", trained["snn"], "--dataset", "digits", "--noise", "0,0.1", "--out", out), words)
        _one_line_exit_2(cli("compile", trained["snn"], "--target", "nir", "--out", out), words)
    assert a_file.read_text() == "x"


def _tampered(bundle: Path, folder: Path, recipe: object) -> Path:
    """A copy of `bundle` whose manifest records `recipe`."""
    import shutil

    shutil.copytree(bundle, folder)
    manifest = json.loads((folder / "snnctl.json").read_text())
    manifest["recipe"] = recipe
    (folder / "snnctl.json").write_text(json.dumps(manifest))
    return folder


def test_a_recorded_recipe_of_the_wrong_shape_is_one_line(cli, trained, tmp_path):
    """The pipelines read a bundle's recorded recipe back: a tampered one is a user error, not a crash."""
    not_a_table = _tampered(trained["snn"], tmp_path / "data-str", {"data": "digits"})
    _one_line_exit_2(cli("bench", not_a_table, "--dataset", "digits"), "recipe.data")
    _one_line_exit_2(cli("compile", not_a_table, "--target", "nir", "--out", tmp_path / "c"), "recipe.data")
    no_data = _tampered(trained["snn"], tmp_path / "no-data", {"model": {"name": "cnn"}})
    _one_line_exit_2(cli("robustify", no_data, "--dataset", "digits", "--out", tmp_path / "r"), "no [data] table")
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()
