"""Benchmark one bundle on a dataset: accuracy, latency, activity, synaptic operations, energy, size."""

from __future__ import annotations

import math
from typing import Any

import torch

from snnctl.artifact import Bundle
from snnctl.data import Dataset, load_as_recorded, require_classification
from snnctl.data.encoders import encode
from snnctl.data.text import bundle_tokenizer, check_same
from snnctl.errors import UserError
from snnctl.metrics import energy
from snnctl.metrics.accuracy import accuracy
from snnctl.metrics.activity import ActivityMeter
from snnctl.metrics.latency import percentile, time_calls
from snnctl.nn.events import Streamer
from snnctl.robust.ternary import logic_gated_layers
from snnctl.zoo import Network


def dataset_for(bundle: Bundle, name: str) -> Dataset:
    """Load `name` the way the bundle was trained on it (same split and options) when that is known;
    only a classification dataset can be benchmarked this way, and text only with the bundle's own
    tokenizer when it keeps one."""
    ds = require_classification(load_as_recorded(name, bundle.data), name)
    check_same(bundle_tokenizer(bundle.path, bundle.manifest.get("tokenizer")), ds.info.get("tokenizer_json"),
               where=f"--dataset {name}")
    return ds


def expected_input(model: torch.nn.Module) -> str:
    """What the model's first layer takes, in words: the other half of a misfit message."""
    embeddings = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    if embeddings:  # a token model may register its head before its embedding
        return f"token ids below {embeddings[0].num_embeddings}"
    for m in model.modules():
        if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d):
            spatial = ", ".join(["..."] * (m.weight.ndim - 2))
            return f"float inputs of shape ({m.in_channels}, {spatial})"
        if isinstance(m, torch.nn.Linear):
            return f"float inputs of {m.in_features} features"
    return "inputs of another shape"


def describe_inputs(ds: Dataset) -> str:
    kind = "token ids" if not ds.x_test.is_floating_point() else "float inputs"
    return f"{ds.name} gives {kind} of shape {tuple(ds.input_shape)}"


def check_compatible(model: torch.nn.Module, ds: Dataset, where: str, hint: str | None = None) -> None:
    """Run two test examples through the model: wrong input shapes, types or class counts are a user
    error that names what the model takes and what the data gives."""
    probe = ds.x_test[:2]
    try:
        with torch.no_grad():
            logits = model(probe)
    except (RuntimeError, IndexError, TypeError, ValueError) as err:
        raise UserError(
            f"model takes {expected_input(model)} but {describe_inputs(ds)} ({str(err).splitlines()[0]})",
            where=where, hint=hint,
        ) from None
    if logits.shape[-1] != ds.num_classes:
        raise UserError(
            f"model has {logits.shape[-1]} outputs but {ds.name} has {ds.num_classes} classes",
            where=where, hint=hint,
        )


def streaming_latency(model: torch.nn.Module, x: torch.Tensor, calls: int, device: torch.device) -> dict[str, Any]:
    """Batch-1 streaming: one sample fed step by step with state carried (`Streamer`), where layers
    fed by sparse binary spikes take the event path on their own. Milliseconds per whole inference."""
    streamer = Streamer(model)
    seq = encode(x[:1], model.T, model.encoding, model.generator)

    def infer() -> None:
        streamer.reset()
        streamer.run(seq)

    times = time_calls(infer, calls=calls, device=device)
    counts = streamer.path_counts()
    return {"p50": percentile(times, 50) * 1e3, "p95": percentile(times, 95) * 1e3,
            "event_layer_calls": counts["event"], "dense_layer_calls": counts["dense"]}


def is_text(model: torch.nn.Module) -> bool:
    """A token-sequence classifier (zoo.sequence): its neurons run along the tokens, not over T steps."""
    return any(getattr(m, "pads_tokens", False) for m in model.modules())


def subset_accuracy(model: torch.nn.Module, ds: Dataset, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int) -> dict[str, dict[str, float | int]]:
    """Accuracy on each named subset of the test split the dataset declares (SST-2's long sentences)."""
    subsets = ds.info.get("test_subsets") or {}
    return {name: {"size": int(mask.sum()), "accuracy": accuracy(model, x[mask.to(x.device)], y[mask.to(y.device)],
                                                                  batch_size=batch_size)}
            for name, mask in subsets.items() if int(mask.sum())}


def measure_activity(model: Network, x: torch.Tensor, batch_size: int) -> dict[str, Any]:
    """Operation counts per inference over the whole test split, and firing per spiking layer."""
    with ActivityMeter(model) as act:
        for start in range(0, len(x), batch_size):
            model(x[start : start + batch_size])
        act.samples = len(x)
    T = model.T if model.spiking else 1
    tokens = float((x != 0).sum()) / len(x) if not x.is_floating_point() else None
    steps = T * (tokens if tokens and is_text(model) else 1.0)  # a token model's neurons run once per token
    layers = [{"layer": c.name, "neurons": round(c.neuron_steps / act.samples / steps),
               "firing_rate": c.spikes / c.neuron_steps}
              for c in act.layers.values() if c.neuron_steps and model.spiking]
    macs, sops, updates = act.per_sample("macs"), act.per_sample("sops"), act.per_sample("neuron_steps")
    spikes = act.per_sample("spikes") if model.spiking else None
    out: dict[str, Any] = {
        "spikes_per_inference": spikes,
        "firing_rate": (act.total("spikes") / act.total("neuron_steps")) if model.spiking else None,
        "layers": layers, "macs": macs, "sops": sops, "neuron_updates": updates,
        "energy_nj": energy.estimate(macs, sops, updates),
        "vs_int8_ann": energy.break_even_rate(act.per_sample("spike_fed_macs"), sops, macs, updates, T)
        if model.spiking else None,
    }
    if tokens is not None:
        out["tokens_per_inference"] = tokens
        out["spikes_per_token"] = spikes / tokens if spikes is not None and tokens else None
    return out


def measure_latency(model: Network, x: torch.Tensor, dev: torch.device, latency_samples: int, batch_size: int,
                    batch_repeats: int) -> dict[str, Any]:
    single = time_calls(lambda: model(x[:1]), calls=latency_samples, device=dev)
    stream = streaming_latency(model, x, latency_samples, dev) if model.spiking and not is_text(model) else None
    batch = x[:batch_size]
    batched = time_calls(lambda: model(batch), calls=batch_repeats, device=dev)
    return {
        "latency_b1_ms": {"p50": percentile(single, 50) * 1e3, "p95": percentile(single, 95) * 1e3},
        "latency_stream_ms": stream,
        "latency_batch_ms": {"batch": len(batch), "p50": percentile(batched, 50) * 1e3,
                             "p95": percentile(batched, 95) * 1e3},
        "throughput_per_s": len(batch) / percentile(batched, 50),
    }


@torch.no_grad()
def bench_bundle(
    bundle: Bundle,
    ds: Dataset,
    *,
    device: str = "cpu",
    latency_samples: int = 100,
    batch_size: int = 256,
    batch_repeats: int = 10,
) -> dict[str, Any]:
    check_compatible(bundle.model, ds, str(bundle.path))
    dev = torch.device(device)
    model = bundle.model.to(dev).eval()
    x, y = ds.x_test.to(dev), ds.y_test.to(dev)
    activity = measure_activity(model, x, batch_size)
    gated = logic_gated_layers(model)
    packed_weights = sum(math.prod(m.weight_shape) + (m.bias_scaled.numel() if m.bias_scaled is not None else 0)
                         for _, m in gated)
    params = sum(p.numel() for p in model.parameters()) + packed_weights
    return {
        "bundle": str(bundle.path),
        "model": bundle.name,
        "kind": bundle.manifest["kind"],
        "T": model.T if model.spiking else None,
        "dataset": ds.name,
        "test_samples": len(y),
        "accuracy": accuracy(model, x, y, batch_size=batch_size),
        "subsets": subset_accuracy(model, ds, x, y, batch_size),
        **measure_latency(model, x, dev, latency_samples, batch_size, batch_repeats),
        **activity,
        "params": params,
        "size_bytes": bundle.size_bytes,
        "size_float32_bytes": 4 * params,
        "logic_gated": bool(gated),
        "synaptic_multiplications": activity["macs"],
        "device": device,
        "threads": torch.get_num_threads(),
    }
