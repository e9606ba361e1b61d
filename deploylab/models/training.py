"""The short training loop the course's small classifiers share (LeNet, the MatMul MLP)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn


def fit_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    generator: torch.Generator,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    progress_desc: str | None = None,
) -> tuple[list[float], float]:
    """Adam with a cosine schedule over ``epochs``; returns (mean loss per epoch, seconds).

    Data order (and ``augment``, if given) draw from ``generator``, so a seeded generator
    makes the run repeatable. Runs on one thread: these models are too small to gain from
    two, and a second thread makes training several times slower when anything else
    wants the CPU. ``progress_desc`` shows a tqdm bar with that label. Leaves the model in
    eval mode.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    epoch_iter = range(epochs)
    if progress_desc:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc=progress_desc, unit="epoch")
    losses: list[float] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        for _ in epoch_iter:
            model.train()
            order = torch.randperm(len(labels), generator=generator)
            total = 0.0
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                batch = images[idx] if augment is None else augment(images[idx], generator)
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(batch), labels[idx])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
            scheduler.step()
            losses.append(total / len(order))
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return losses, time.perf_counter() - start
