"""ANN-to-SNN conversion (`snnctl convert`) and calibration (`snnctl calibrate`).

A traced ANN is rewritten op by op: BatchNorm folded, every ReLU-like op replaced by a threshold-scaled
IF neuron (`neuron.Converted`), max pooling moved in front of its neuron, linear ops passed through.
Weights stay untouched; thresholds and calibration offsets are buffers, so a bundle round-trips.
"""
