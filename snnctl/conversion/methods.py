"""The conversion vocabulary in one torch-free place, so help texts, validators and the code that runs
each choice read the same names (and `snnctl --help` stays fast)."""

from __future__ import annotations

METHODS: dict[str, str] = {
    "rate": "rate coding, thresholds from activation percentiles (default)",
    "qcfs": "for a QCFS-trained ANN: thresholds from its learnt clip levels",
    "graded": "graded spikes, several threshold crossings per step",
}
STAGES = ("threshold", "bias", "potential", "delay", "hseo")  # calibration stages, in the order they run
DEFAULT_STAGES = ("threshold", "bias", "potential", "delay")
# How the rewrite treats max pooling (graph.move_maxpool, average_maxpool; neuron.RateMaxPool says why).
MAXPOOL_MODES: dict[str, str] = {
    "diff": "differenced running max, exact over T (default where the target pools max)",
    "rate": "gated by the largest running sum (before 0.x's diff; biased up on near-tied windows)",
    "average": "average pooling + ReLU (the form for targets with no max; changes the ANN)",
}


def listed(names: object) -> str:
    """'a, b or c' for a help text."""
    items = list(names)  # type: ignore[call-overload]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
