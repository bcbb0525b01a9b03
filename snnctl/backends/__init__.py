"""Compile targets: NIR, ONNX, Lava (float) and Loihi 2 (fixed point), each with a round-trip check.

Every target is registered in the `snnctl.targets` entry-point group as a `Target` (see `targets.py`).
The path from a bundle is: trace the SNN into a NIR graph (`extract`), which the NIR target writes
as is, and which `spec` turns into snnctl's own graph network (NIR import, round trips) and into a
chain of synapse -> neuron populations (`chain`) for Lava and Loihi. ONNX exports the PyTorch model's
single step directly (`onnx_export`).
"""
