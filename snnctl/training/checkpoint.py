"""Training checkpoints in one safetensors file: tensors as tensors, everything else as JSON metadata.

Model weights, optimizer moments, the RNG state and the step are all kept, so a resumed run continues
exactly where the interrupted one stopped. Nothing is pickled.
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
    for idx, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{name}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split("/", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, slots in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, info: dict[str, Any]
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    meta = {"info": json.dumps(info), "optimizer": json.dumps(optim_meta)}
    path = folder / CHECKPOINT
    write_atomic(path, save_safetensors(tensors, metadata=meta))
    return path


def load_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model, optimizer and RNG in place; return the saved `info` (step, recipe, ...)."""
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
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    optimizer.load_state_dict(
        _unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optim/")}, optim_meta)
    )
    torch.set_rng_state(tensors["rng/torch"])
    return info
