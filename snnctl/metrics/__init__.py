"""Measurements shared by `train` and `bench`: accuracy, spikes, synaptic operations, energy, latency."""
