"""The NIR target: `nir.write` the traced graph, read it back and run it as snnctl's graph network."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nir

from snnctl.artifact import Bundle
from snnctl.backends.extract import ExportOptions, to_nir
from snnctl.backends.graphnet import from_nir
from snnctl.backends.roundtrip import compare, encoded, run_torch
from snnctl.errors import UserError
from snnctl.zoo import Network, build_network

IMPORT_NEURON = {"type": "lif", "reset": "zero"}


def write_nir(graph: nir.NIRGraph, path: Path) -> None:
    """nir.write to a temporary name, then rename: no half-written .nir."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        nir.write(str(tmp), graph)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_nir(path: Path) -> nir.NIRGraph:
    try:
        return nir.read(str(path))
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise UserError(f"cannot read NIR file ({type(err).__name__}: {err})", where=str(path),
                        hint="give a file written by nir.write (HDF5)") from None


def network_from_nir(graph: nir.NIRGraph, opts: ExportOptions, T: int, encoding: str = "direct") -> tuple[
        Network, dict[str, Any]]:
    """An snnctl SNN (zoo `nir`) with the graph's weights; also the spec recorded in its manifest."""
    spec, state = from_nir(graph, opts)
    net = build_network("nir", spec, kind="snn", neuron=IMPORT_NEURON, encoding=encoding, T=T)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "readout_scale"]
    if missing or unexpected:
        raise UserError(f"NIR import produced mismatched tensors (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net.eval(), spec


def compile_and_check(bundle: Bundle, out: Path, options: Any, inputs: Any, T: int) -> tuple[dict, dict]:
    model = bundle.model
    opts = options.export
    graph = to_nir(model, tuple(inputs.x.shape[1:]), opts)
    path = out / "model.nir"
    write_nir(graph, path)
    back, _ = network_from_nir(read_nir(path), opts, T, model.encoding)
    seq = encoded(model, inputs.x, T)
    reference = run_torch(model, seq)
    report = compare(reference, run_torch(back, seq), inputs.labels, model.readout_delay)
    report.update(inputs=inputs.source, compared_with="the .nir file read back and run as snnctl's graph network",
                  dt=opts.dt, discretisation=opts.discretisation, nodes=len(graph.nodes), edges=len(graph.edges))
    return report, {"nir": path.name}





def import_bundle(path: Path, out: Path, opts: ExportOptions, T: int) -> dict[str, Any]:
    """`snnctl convert model.nir`: read a NIR graph and write it as an snnctl SNN bundle (zoo `nir`)."""
    from snnctl.artifact import make_manifest, save_bundle

    graph = read_nir(path)
    net, spec = network_from_nir(graph, opts, T)
    meta = {k: v for k, v in (graph.metadata or {}).items() if isinstance(v, (str, int, float, bool))}
    manifest = make_manifest(zoo_name="nir", zoo_config=spec, kind="snn", neuron=IMPORT_NEURON, T=T,
                             encoding="direct", parent=str(path))
    manifest["nir_import"] = {"file": str(path), "dt": opts.dt, "discretisation": opts.discretisation,
                              "nodes": len(graph.nodes), "edges": len(graph.edges), "metadata": meta}
    save_bundle(out, net, manifest)
    return {"out": str(out), "nodes": len(graph.nodes), "edges": len(graph.edges), "T": T,
            "neuron_layers": sum(1 for e in spec["nodes"] if e["type"] == "neuron"), "dt": opts.dt,
            "discretisation": opts.discretisation}
