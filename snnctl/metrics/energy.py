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


@dataclass(frozen=True)
class Int8Constants:
    """Per-operation energies for the break-even against an 8-bit ANN, from the same Horowitz table:
    int8 multiply 0.2 + add 0.03 pJ; int32 add 0.1 pJ (a membrane accumulate); an 8-bit access taken
    as a quarter of the 5 pJ 32-bit one. Both networks read 8-bit weights."""

    mac8_pj: float = 0.2 + 0.03 + 1.25  # multiply-accumulate + the weight's byte
    sop_pj: float = 0.1 + 1.25  # one accumulate per spike and synapse + the weight's byte
    activation8_pj: float = 2 * 1.25  # an 8-bit activation written and read back
    state_pj: float = 2 * 5.0  # a 32-bit membrane read and written per neuron update
    source: str = "Horowitz ISSCC 2014 (45 nm): int8 mult 0.2, add 0.03, int32 add 0.1 pJ; 1.25 pJ per byte moved"


INT8 = Int8Constants()


def break_even_rate(spike_fed_macs: float, sops: float, other_macs: float, neuron_updates: float, T: int,
                    c: Int8Constants = INT8) -> dict[str, float | None]:
    """The spike rate below which this SNN would cost less than an 8-bit ANN of the same shape.

    Counting data movement as Yan et al. (2024) argue one must: the ANN does each of the SNN's layers
    once (`spike_fed_macs / T` MACs where the SNN has spikes, `other_macs / T` elsewhere) and writes
    and reads each activation; the SNN does `other_macs` at the same 8-bit cost, one accumulate per
    spike and synapse, and reads and writes a membrane per neuron update. With rate r = sops /
    spike_fed_macs, E_snn(r) = E_ann8 at r* below. `r* >= 1` means the SNN costs less at any rate.
    Arguments are per inference, summed over the SNN's T steps (the activity meter's totals). When
    its dense parts and membranes alone already cost more than the ANN, no rate breaks even: None.
    Spike-driven products of two spike tensors (attention's `K^T V`) count as one layer here, so
    their cost goes with the rate, not its square: a pessimistic bound for the SNN.
    """
    if spike_fed_macs <= 0:
        return {"break_even_rate": None, "spike_rate": None, "ann8_nj": None, "snn_int8_nj": None}
    ann8 = (spike_fed_macs + other_macs) / T * c.mac8_pj + neuron_updates / T * c.activation8_pj
    fixed = other_macs * c.mac8_pj + neuron_updates * c.state_pj
    snn = fixed + sops * c.sop_pj
    rate = (ann8 - fixed) / (spike_fed_macs * c.sop_pj)
    return {"break_even_rate": rate if rate > 0 else None, "spike_rate": sops / spike_fed_macs,
            "ann8_nj": ann8 / 1e3, "snn_int8_nj": snn / 1e3}


def describe_int8() -> dict[str, object]:
    return {**asdict(INT8), "note": "estimate, not a measurement"}
