"""PyTorch eager execution behind the runner contract: the reference every export is checked against."""

from __future__ import annotations

import threading

import numpy as np
import torch

from deploylab.backends.base import Runner, RunnerSettings, TensorSpec


class TorchEagerRunner(Runner):
    """Runs a :class:`deploylab.models.ModelBundle`'s reference function on CPU.

    The input is named after the bundle's first input (``input``) with a symbolic
    ``batch`` dim, so the same feed works for the exported model and the reference.
    The output is whatever the exported graph is meant to produce (logits, or the
    stacked probabilities of an mmcls classifier).
    """

    backend = "torch"
    thread_safe = True  # a module in eval mode under no_grad may be called from several threads
    # torch's thread count is process-wide: runners that change it take turns.
    _threads_lock = threading.Lock()

    def __init__(self, bundle, name: str | None = None, threads: int | None = None):
        super().__init__(name or f"torch:{bundle.name}")
        self.bundle = bundle
        self.threads = threads

    def settings(self) -> RunnerSettings:
        return RunnerSettings(int(self.threads) if self.threads else None)

    def _activate(self) -> None:
        self.bundle.model.eval()

    def _describe(self):
        shape = ("batch",) + tuple(self.bundle.input_shape[1:])
        inputs = [TensorSpec(self.bundle.input_names[0], np.dtype(np.float32), shape)]
        out = self.bundle.reference(self.bundle.example_input)
        outputs = [TensorSpec(self.bundle.output_names[0], np.dtype(out.dtype), ("batch",) + out.shape[1:])]
        return inputs, outputs

    def _infer(self, feed):
        x = torch.from_numpy(feed[self.bundle.input_names[0]])
        if not self.threads:
            return {self.bundle.output_names[0]: np.asarray(self.bundle.reference(x))}
        with self._threads_lock:
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                out = self.bundle.reference(x)
            finally:
                torch.set_num_threads(previous)
        return {self.bundle.output_names[0]: np.asarray(out)}
