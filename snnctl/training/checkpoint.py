"""Training checkpoints in one safetensors file: tensors as tensors, everything else as JSON metadata.

Model weights, optimizer moments, the RNG state and the step are all kept, so a resumed run continues
exactly where the interrupted one stopped. Both states are full and keyed by parameter name (as
torch.distributed.checkpoint's full state dicts are), whatever the strategy that wrote them, so a run
resumes with another number of processes. Nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors

from snnctl.artifact import write_atomic
from snnctl.errors import UserError

CHECKPOINT = "checkpoint.safetensors"


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, slots in state["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{name}/{slot}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(name), {})[slot] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, name, slot = key.rsplit("/", 2)
        state.setdefault(name, {})[slot] = value
    for name, slots in meta["scalars"].items():
        state.setdefault(name, {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    folder: Path, weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any], info: dict[str, Any]
) -> Path:
    """Write full model and optimizer state dicts (from `Replicas.checkpoint_state`) atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in weights.items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer_state)
    tensors.update(optim_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    meta = {"info": json.dumps(info), "optimizer": json.dumps(optim_meta)}
    path = folder / CHECKPOINT
    write_atomic(path, save_safetensors(tensors, metadata=meta))
    return path


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """The saved weights, optimizer state and `info` (step, recipe, ...); restores the RNG."""
    path = folder / CHECKPOINT
    if not path.is_file():
        raise UserError("no checkpoint to resume from", where=str(folder), hint="run without --resume first")
    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        info = json.loads(meta["info"])
        optim_meta = json.loads(meta["optimizer"])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as err:
        raise UserError(f"corrupt checkpoint ({err})", where=str(path)) from None
    optim = _unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optim/")}, optim_meta)
    if any(name.isdigit() for name in optim["state"]):
        raise UserError("the checkpoint was written by an older snnctl (optimizer state by position)",
                        where=str(path), hint="train into a new --out (the finished bundle there is still usable)")
    torch.set_rng_state(tensors["rng/torch"])
    return {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, optim, info
