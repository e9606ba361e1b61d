"""ResNet-18 two ways: the notes' mmcls route and torchvision, with one state dict for both.

mmcls 0.25's ``ImageClassifier`` keeps the torchvision layer names under a ``backbone.``
prefix and puts the classifier at ``head.fc``; torchvision's ``resnet18`` has the same
layers at the top level and the classifier at ``fc``. The mapping between them is a
rename, so one checkpoint serves both and their logits agree to float rounding.

When the real OpenMMLab checkpoint is in ``data/checkpoints/`` it is used. It cannot be
downloaded at run time here, so otherwise a seeded initialisation is used and announced.

The mmcls config lookup and its quiet import live in :mod:`deploylab.mmcls_compat`
(``mmcls_config_path`` and ``MMCLS_CONFIG_NAME`` stay importable from here).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from deploylab.errors import DeployLabError
from deploylab.log import announce
from deploylab.mmcls_compat import MMCLS_CONFIG_NAME, mmcls_config_path, quiet_mmcls_import
from deploylab.paths import DATA_DIR

MMCLS_CHECKPOINT_NAME = "resnet18_8xb32_in1k_20210831-fbbb1da6.pth"
RESNET18_CHECKPOINT = DATA_DIR / "checkpoints" / MMCLS_CHECKPOINT_NAME
RESNET_INPUT_SHAPE = (1, 3, 224, 224)
DEFAULT_SEED = 0


# ---------------------------------------------------------------- key mapping
def mmcls_to_torchvision(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an mmcls ImageClassifier state dict to torchvision's ResNet names.

    ``backbone.X`` -> ``X`` and ``head.fc.X`` -> ``fc.X``; any other key is an error,
    because silently dropping weights would give a model that is quietly wrong.
    """
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            out[key[len("backbone.") :]] = value
        elif key.startswith("head.fc."):
            out["fc." + key[len("head.fc.") :]] = value
        else:
            raise DeployLabError(
                f"key {key!r} is neither under 'backbone.' nor 'head.fc.'; "
                "this is not an mmcls ImageClassifier ResNet checkpoint"
            )
    return out


def torchvision_to_mmcls(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`mmcls_to_torchvision`: ``fc.X`` -> ``head.fc.X``, else ``backbone.X``."""
    return {
        ("head." + key if key.startswith("fc.") else "backbone." + key): value
        for key, value in state.items()
    }


# ---------------------------------------------------------------- mmcls route
def build_mmcls_classifier(
    config: str | Path = MMCLS_CONFIG_NAME,
    checkpoint: str | Path | Mapping[str, torch.Tensor] | None = None,
    seed: int = DEFAULT_SEED,
) -> nn.Module:
    """The notes' ``init_model(config, checkpoint)``, on CPU, in eval mode.

    The checkpoint is loaded by deploylab, strictly (listing any key that does not fit;
    mmcv 1.7's ``load_checkpoint`` defaults to ``strict=False`` and only logs them) and with
    ``weights_only=True`` spelled out (mmcv calls ``torch.load`` without it, which refuses
    arbitrary pickled objects only because PyTorch >= 2.6 defaults to ``weights_only=True``).
    Without a checkpoint the weights come from ``torch.manual_seed(seed)``.
    """
    from deploylab.models.checkpoint import load_state_dict_into, read_state_dict

    apis = quiet_mmcls_import()
    torch.manual_seed(seed)
    model = apis.init_model(str(mmcls_config_path(str(config))), checkpoint=None, device="cpu")
    if checkpoint is not None:
        state = read_state_dict(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
        load_state_dict_into(model, state)
    return model.eval()


def mmcls_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits of an mmcls ImageClassifier (its eager ``forward`` returns softmax numpy lists)."""
    with torch.no_grad():
        feats = model.extract_feat(images)
        return model.head.simple_test(feats, softmax=False, post_process=False)


# ---------------------------------------------------------------- torchvision route
def build_torchvision_resnet18(
    state: Mapping[str, torch.Tensor] | None = None, seed: int = DEFAULT_SEED
) -> nn.Module:
    """torchvision's resnet18 (1000 classes), with ``state`` in torchvision names if given."""
    from torchvision.models import resnet18

    from deploylab.models.checkpoint import load_state_dict_into

    torch.manual_seed(seed)
    model = resnet18(weights=None, num_classes=1000)
    if state is not None:
        load_state_dict_into(model, state)
    return model.eval()


def resnet18_state_dict(
    checkpoint: str | Path | None = None, seed: int = DEFAULT_SEED
) -> tuple[dict[str, torch.Tensor], str]:
    """The mmcls-named ResNet-18 weights the course uses, and where they came from.

    Order: ``checkpoint`` if given (must exist), else the real OpenMMLab checkpoint in
    ``data/checkpoints/`` if present, else a seeded initialisation (announced in one line).
    """
    from deploylab.models.checkpoint import read_state_dict

    if checkpoint is not None:
        return read_state_dict(checkpoint), f"checkpoint {checkpoint}"
    if RESNET18_CHECKPOINT.is_file():
        return read_state_dict(RESNET18_CHECKPOINT), f"checkpoint {RESNET18_CHECKPOINT.name}"
    source = seeded_weights_note(seed)
    announce(source)
    torch.manual_seed(seed)
    tv = build_torchvision_resnet18(seed=seed)
    return torchvision_to_mmcls(tv.state_dict()), source


def seeded_weights_note(seed: int = DEFAULT_SEED) -> str:
    return (
        f"ResNet-18: {MMCLS_CHECKPOINT_NAME} not found in {RESNET18_CHECKPOINT.parent}, "
        f"using a seeded random initialisation (seed {seed}); predictions are not meaningful"
    )


def has_real_resnet18_checkpoint() -> bool:
    """True when the OpenMMLab ImageNet checkpoint is in ``data/checkpoints/``."""
    return RESNET18_CHECKPOINT.is_file()
