"""Energy estimates, stated as estimates, with their constants printed beside them.

Compute follows the usual 45 nm convention (Horowitz, ISSCC 2014): a 32-bit float MAC costs
4.6 pJ (3.7 mult + 0.9 add), a spike-driven accumulate 0.9 pJ. Critics (Dampfhoffer et al. 2023,
Lemaire et al. 2022) note memory access dominates, so a second figure adds 5 pJ per 32-bit access:
one weight read per MAC or accumulate, and a read plus a write of each neuron state (or activation)
per update. Neither figure is a measurement of any chip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class EnergyConstants:
    e_mac_pj: float = 4.6
    e_ac_pj: float = 0.9
    e_mem_pj: float = 5.0
    source: str = "Horowitz ISSCC 2014, 45 nm, 32-bit float; memory 5 pJ per 32-bit access (8 KB cache)"


CONSTANTS = EnergyConstants()

FORMULA = (
    "compute = e_mac*MACs + e_ac*SOPs; "
    "with memory = compute + e_mem*(MACs + SOPs + 2*neuron_updates)"
)


def estimate(macs: float, sops: float, neuron_updates: float, c: EnergyConstants = CONSTANTS) -> dict[str, float]:
    """Per-inference energy estimate in nanojoules."""
    compute_pj = c.e_mac_pj * macs + c.e_ac_pj * sops
    memory_pj = c.e_mem_pj * (macs + sops + 2 * neuron_updates)
    return {"compute_nj": compute_pj / 1e3, "with_memory_nj": (compute_pj + memory_pj) / 1e3}


def describe() -> dict[str, object]:
    return {**asdict(CONSTANTS), "formula": FORMULA, "note": "estimate, not a measurement"}
