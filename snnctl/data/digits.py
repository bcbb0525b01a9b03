"""scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), shipped with scikit-learn."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from snnctl.data import Dataset


def load(
    test_fraction: float = 0.2,
    split_seed: int = 0,
    size: int = 8,
    channels: int = 1,
    binarize: bool = False,
) -> Dataset:
    """Stratified split; pixels scaled to [0, 1]. `size`/`channels` resize for ImageNet-style nets;
    `binarize` thresholds at 0.5 (binary inputs, for bit-flip noise)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if binarize:
        x = (x >= 0.5).to(torch.float32)
    if channels != 1:
        x = x.expand(-1, channels, -1, -1).contiguous()
    idx_train, idx_test = train_test_split(
        range(len(y)), test_size=test_fraction, random_state=split_seed, stratify=digits.target
    )
    return Dataset(
        name="digits",
        x_train=x[idx_train],
        y_train=y[idx_train],
        x_test=x[idx_test],
        y_test=y[idx_test],
        num_classes=10,
    )
