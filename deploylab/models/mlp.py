"""A digits MLP whose Linear layers export as MatMul, the model int4 weight-only quantization needs.

PyTorch exports ``nn.Linear`` on a 2-D input (N, features) as ``Gemm``, which ONNX Runtime's
MatMulNBits quantizer skips, so LeNet has nothing to quantize to int4. :class:`MatMulMLP`
feeds its Linear layers a 3-D input (N, 1, features), which exports as ``MatMul`` + ``Add``.
No weights are shipped: :func:`train_matmul_mlp` trains it in seconds on the digits split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

MATMUL_MLP_INPUT_SHAPE = (1, 1, 32, 32)


class MatMulMLP(nn.Module):
    """A digits MLP whose Linear layers export as MatMul: input (N, 1, 32, 32), output (N, 10).

    The image is flattened to (N, 1, 1024), not (N, 1024): on a 3-D input PyTorch exports
    ``nn.Linear`` as ``MatMul`` + ``Add`` instead of ``Gemm``, which is what int4
    weight-only quantization (MatMulNBits) works on.
    """

    def __init__(self, hidden: tuple[int, int] = (128, 64)) -> None:
        super().__init__()
        self.fc1 = nn.Linear(32 * 32, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], 10)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img.flatten(2)  # (N, 1, 1024): keeps a middle dim so Linear exports as MatMul
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x).flatten(1)


@dataclass
class MlpTrainingReport:
    """What :func:`train_matmul_mlp` did: settings, time (s), accuracies on the fixed digits split."""

    seed: int
    epochs: int
    seconds: float
    train_accuracy: float
    test_accuracy: float
    losses: list[float] = field(default_factory=list)


def train_matmul_mlp(seed: int = 0, epochs: int = 15, batch_size: int = 64,
                     learning_rate: float = 2e-3) -> tuple[MatMulMLP, MlpTrainingReport]:
    """Train :class:`MatMulMLP` on the digits train split (1-3 s on one core; 96-97 % test accuracy).

    Adam with a cosine schedule, one thread (as for LeNet: the layers are too small to
    gain from more), seeded initialisation and data order.
    """
    from deploylab.data.digits import load_digits_split
    from deploylab.models.lenet import accuracy
    from deploylab.models.training import fit_classifier

    train, test = load_digits_split("train"), load_digits_split("test")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = MatMulMLP()
    losses, seconds = fit_classifier(model, torch.from_numpy(train.images), torch.from_numpy(train.labels),
                                     epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                     generator=generator)
    report = MlpTrainingReport(seed, epochs, seconds, accuracy(model, train.images, train.labels),
                               accuracy(model, test.images, test.labels), losses)
    return model, report


def load_matmul_mlp(checkpoint: str | Path | None = None, seed: int = 0) -> tuple[MatMulMLP, str]:
    """:class:`MatMulMLP` in eval mode and where its weights come from.

    With ``checkpoint`` (a state dict file) its weights are loaded; without one the MLP is
    trained with ``seed`` (:func:`train_matmul_mlp`, a few seconds), since none is shipped.
    """
    if checkpoint is not None:
        from deploylab.models.checkpoint import load_state_dict_into

        model = MatMulMLP()
        load_state_dict_into(model, checkpoint)
        return model.eval(), f"checkpoint {Path(checkpoint).name}"
    model, report = train_matmul_mlp(seed=seed)
    return model.eval(), (f"trained on sklearn digits (seed {seed}, {report.epochs} epochs, "
                          f"test accuracy {report.test_accuracy:.1%})")
