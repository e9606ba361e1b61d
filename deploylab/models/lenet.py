"""LeNet exactly as in the notes, and a short training run on the digits.

The architecture (sigmoid activations, average pooling, 400-120-84-10) is the notes',
unchanged, so the exported graph is the one the notes describe. Sigmoid LeNet learns
slowly with plain SGD and memorises the 1,437 training digits, so training uses Adam
with small random affine augmentations: 40 epochs take 10-35 s on two CPU cores and
reach 97-99 % test accuracy across seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deploylab.errors import DeployLabError
from deploylab.text import first_line
from deploylab.paths import DATA_DIR, replace_when_done

LENET_CHECKPOINT = DATA_DIR / "checkpoints" / "lenet_digits.pt"
LENET_INPUT_SHAPE = (1, 1, 32, 32)


class LeNet(nn.Module):
    """The notes' LeNet: input (N, 1, 32, 32), output (N, 10) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.Sigmoid(),
            nn.Linear(84, 10),
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(img)


@dataclass
class TrainingReport:
    """What :func:`train_lenet` did: settings, per-epoch loss, final accuracies."""

    seed: int
    epochs: int
    batch_size: int
    learning_rate: float
    seconds: float
    train_accuracy: float
    test_accuracy: float
    losses: list[float] = field(default_factory=list)


def predict_classes(model: nn.Module, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Argmax class of ``model`` for float32 images (N, 1, 32, 32)."""
    model.eval()
    preds = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            preds.append(model(batch).argmax(dim=1).numpy())
    return np.concatenate(preds)


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``images`` whose argmax class equals ``labels``."""
    return float((predict_classes(model, images) == labels).mean())


def random_affine(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small random rotations (+-10 deg), scalings (0.9-1.1) and shifts (+-2 px at 32x32).

    The digits set is small (1,437 training images); without augmentation LeNet
    memorises it and stays near 96 % on the test split.
    """
    n = images.shape[0]
    u = torch.rand(n, 4, generator=generator) * 2 - 1
    angle = u[:, 0] * (10 * torch.pi / 180)
    scale = 1 + 0.1 * u[:, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, u[:, 2] * 0.125], 1), torch.stack([sin, cos, u[:, 3] * 0.125], 1)], 1
    )
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


def train_lenet(
    epochs: int = 40,
    seed: int = 0,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    progress: bool = False,
) -> tuple[LeNet, TrainingReport]:
    """Train the notes' LeNet on the fixed digits train split.

    Deterministic for a given seed on one machine (single-threaded data order, seeded
    initialisation). Returns the model in eval mode and a :class:`TrainingReport`.
    """
    from deploylab.data.digits import load_digits_split
    from deploylab.models.training import fit_classifier

    train = load_digits_split("train")
    test = load_digits_split("test")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = LeNet()
    losses, seconds = fit_classifier(
        model, torch.from_numpy(train.images), torch.from_numpy(train.labels), epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, generator=generator, augment=random_affine,
        progress_desc="training LeNet" if progress else None,
    )
    report = TrainingReport(
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seconds=seconds,
        train_accuracy=accuracy(model, train.images, train.labels),
        test_accuracy=accuracy(model, test.images, test.labels),
        losses=losses,
    )
    return model, report


def load_lenet(checkpoint: str | Path | None = None) -> LeNet:
    """LeNet with the shipped digits weights (or those in ``checkpoint``), in eval mode."""
    from deploylab.models.checkpoint import load_state_dict_into

    model = LeNet()
    load_state_dict_into(model, checkpoint or LENET_CHECKPOINT)
    return model.eval()


def save_lenet_checkpoint(model: LeNet, path: str | Path = LENET_CHECKPOINT) -> Path:
    """Save ``model``'s state dict (tensors only, loadable with ``weights_only=True``)."""
    path = Path(path)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        with replace_when_done(path) as partial:  # a full disk or Ctrl-C leaves the previous checkpoint
            torch.save(state, partial)
    except RuntimeError as exc:  # torch's zip writer reports a failed write without an errno
        raise DeployLabError(f"cannot write {str(path)!r} (torch.save: {first_line(exc, limit=120)}); check that its "
                             "folder is writable and has space (nothing was replaced)") from None
    return path
