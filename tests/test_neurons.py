"""Neuron dynamics against sequences worked out by hand."""

from __future__ import annotations

import pytest
import torch

from snnctl.nn import IF, LIF, AdaptiveLIF, GradedLIF, LearnableLIF


def seq(*values: float) -> torch.Tensor:
    """A [T, B=1, N=1] sequence."""
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1)


def flat(x: torch.Tensor) -> list[float]:
    return [round(v, 6) for v in x.flatten().tolist()]


def test_if_reset_by_subtraction_keeps_the_remainder():
    # v: 0.6, 1.2 -> spike -> 0.2, 0.8, 1.4 -> spike -> 0.4
    s, v = IF(threshold=1.0).run(seq(0.6, 0.6, 0.6, 0.6))
    assert flat(s) == [0, 1, 0, 1]
    assert flat(v) == [0.4]


def test_if_reset_to_zero_discards_the_remainder():
    # v: 0.6, 1.2 -> spike -> 0, 0.6, 1.2 -> spike -> 0
    s, v = IF(threshold=1.0, reset="zero").run(seq(0.6, 0.6, 0.6, 0.6))
    assert flat(s) == [0, 1, 0, 1]
    assert flat(v) == [0.0]


def test_lif_leaks_with_decay_from_tau():
    # tau = 2 -> decay 0.5. h: 0.8; 0.4+0.8=1.2 -> spike, v=0.2; 0.1+0.8=0.9; 0.45+0.8=1.25 -> spike, v=0.25
    s, v = LIF(tau=2.0, threshold=1.0).run(seq(0.8, 0.8, 0.8, 0.8))
    assert flat(s) == [0, 1, 0, 1]
    assert flat(v) == [0.25]


def test_lif_decay_given_directly_and_threshold_scales_firing():
    # decay 0.9, threshold 2: h: 1, 1.9, 2.71 -> spike, v=0.71
    s, v = LIF(decay=0.9, threshold=2.0).run(seq(1, 1, 1))
    assert flat(s) == [0, 0, 1]
    assert flat(v) == [0.71]


def test_initial_potential_is_a_fraction_of_threshold():
    # v0 = 0.5 * 2 = 1; h = 1 + 1 = 2 -> spike at t=0
    s, _ = IF(threshold=2.0, v_init=0.5).run(seq(1.0))
    assert flat(s) == [1]


def test_state_resets_between_sequences_by_construction():
    neuron = IF(threshold=1.0)
    x = seq(0.6, 0.6, 0.6)
    assert torch.equal(neuron(x), neuron(x))


def test_streaming_with_explicit_state_equals_one_long_sequence():
    neuron = LIF(tau=3.0)
    x = torch.rand(10, 2, 5, dtype=torch.float64) * 1.5
    whole, _ = neuron.run(x)
    first, state = neuron.run(x[:4])
    second, _ = neuron.run(x[4:], state)
    assert torch.equal(torch.cat([first, second]), whole)


def test_adaptive_threshold_rises_after_a_spike():
    # threshold 1, adapt_scale 0.5, adapt_decay 1 (no decay of the trace), decay 1 (no leak)
    # t0: theta 1, h 1.2 -> spike, v 0.2, a 1; t1: theta 1.5, h 1.4 -> none; t2: h 2.6 -> spike, v 1.1, a 2
    # t3: theta 2, h 2.3 -> spike
    s, (v, a) = AdaptiveLIF(decay=1.0, adapt_scale=0.5, adapt_decay=1.0).run(seq(1.2, 1.2, 1.2, 1.2))
    assert flat(s) == [1, 0, 1, 1]
    assert flat(a) == [3.0]
    assert flat(v) == [0.3]


def test_graded_neuron_emits_threshold_multiples_and_subtracts_them():
    # threshold 0.5, levels 4: h 1.3 -> k=2, v 0.3; h 0.3+3 = 3.3 -> k=4 (capped), v 1.3; h 1.3 -> k=2, v .3
    s, v = GradedLIF(threshold=0.5, levels=4).run(seq(1.3, 3.0, 0.0))
    assert flat(s) == [2, 4, 2]
    assert flat(v) == [0.3]


def test_learnable_lif_starts_at_its_tau_and_learns_it():
    neuron = LearnableLIF(tau=4.0)
    assert neuron.decay.item() == pytest.approx(0.75)
    x = torch.rand(8, 3, 4) * 2
    neuron(x).sum().backward()
    assert neuron.w.grad is not None and neuron.w.grad.abs().item() > 0


def test_thresholds_are_buffers_saved_with_the_model():
    assert "threshold" in LIF().state_dict()
    assert "decay" in LIF().state_dict()


@pytest.mark.parametrize("bad", [torch.ones(5), torch.ones(3, 2, dtype=torch.long)])
def test_wrong_layout_or_dtype_names_the_expected_shape(bad: torch.Tensor):
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        LIF()(bad)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="tau or decay"):
        LIF(tau=2.0, decay=0.5)
    with pytest.raises(ValueError, match="reset"):
        LIF(reset="sideways")


# ------------------------------------------------------------------ declared parameters (recipe [neuron])

def test_each_neuron_declares_its_own_recipe_keys():
    from snnctl.nn import expected_keys

    assert set(AdaptiveLIF.Params.model_fields) == {"adapt_decay", "adapt_scale"}
    assert set(GradedLIF.Params.model_fields) == {"levels"}
    assert not LIF.Params.model_fields and "levels" not in expected_keys(LIF)


def test_neuron_table_is_validated_against_the_chosen_neuron():
    from snnctl.config import NeuronSection

    alif = NeuronSection.model_validate({"type": "alif", "adapt_decay": 0.5}).model_dump()
    assert alif["adapt_decay"] == 0.5 and alif["adapt_scale"] == 0.2 and "levels" not in alif
    with pytest.raises(ValueError, match="levels"):
        NeuronSection.model_validate({"type": "lif", "levels": 8})
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        NeuronSection.model_validate({"type": "graded", "levels": 0})
    with pytest.raises(ValueError, match="give tau or decay, not both"):
        NeuronSection.model_validate({"tau": 2.0, "decay": 0.5})
    with pytest.raises(ValueError, match="unknown neuron 'hh'"):
        NeuronSection.model_validate({"type": "hh"})


def test_a_recipe_copy_from_before_declared_parameters_still_loads():
    """Version-1 bundles kept every built-in neuron's keys at their defaults, whatever the neuron."""
    from snnctl.config import NeuronSection
    from snnctl.nn import neuron_factory

    old = {"type": "lif", "threshold": 1.0, "tau": 2.0, "decay": None, "reset": "subtract", "v_init": 0.0,
           "surrogate": "atan", "surrogate_width": 0.5, "detach_reset": False, "adapt_decay": 0.95,
           "adapt_scale": 0.2, "levels": 4}
    assert "levels" not in NeuronSection.model_validate(old).model_dump()
    neuron = neuron_factory(old)()
    assert isinstance(neuron, LIF) and neuron.decay.item() == pytest.approx(0.5)
    graded = neuron_factory({**old, "type": "graded", "tau": None, "levels": 3})()
    assert isinstance(graded, GradedLIF) and graded.levels == 3


def test_neuron_factory_refuses_a_key_the_neuron_does_not_declare():
    from snnctl.errors import UserError
    from snnctl.nn import neuron_factory

    with pytest.raises(UserError, match=r"neuron 'lif': levels: unknown key.*expected one of: .*threshold"):
        neuron_factory({"type": "lif", "levels": 8})
