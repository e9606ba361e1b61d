"""scikit-learn's handwritten digits, upscaled to LeNet's 32x32 input.

The data ships inside scikit-learn (1,797 8x8 greyscale images, values 0..16), so
nothing is downloaded. The split is fixed (stratified, seed 0, 20 % test) so that
accuracies reported anywhere in the course are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLIT_SEED = 0
TEST_FRACTION = 0.2
IMAGE_SIZE = 32


@dataclass(frozen=True)
class DigitsSplit:
    """Images as float32 (N, 1, 32, 32) in [0, 1] and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def upscale_digits(images_8x8: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Bilinear-upscale (N, 8, 8) digits with values 0..16 to float32 (N, 1, size, size) in [0, 1]."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(images_8x8, dtype=np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0).numpy()


def load_digits_split(split: str = "train") -> DigitsSplit:
    """Return the fixed ``"train"``, ``"test"`` or ``"all"`` split of the digits data."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test", "all"):
        from deploylab.errors import DeployLabError

        raise DeployLabError(f"unknown digits split {split!r}; use 'train', 'test' or 'all'")
    bunch = load_digits()
    images = upscale_digits(bunch.images)
    labels = bunch.target.astype(np.int64)
    if split == "all":
        return DigitsSplit(images, labels)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    chosen = train_idx if split == "train" else test_idx
    return DigitsSplit(images[chosen], labels[chosen])
