"""Loading checkpoints safely and saying exactly what does not fit.

Checkpoints are read with ``torch.load(..., weights_only=True)``: a pickled checkpoint
from an untrusted source cannot run code. OpenMMLab checkpoints wrap the weights in
``{"state_dict": ..., "meta": ...}``; both that and a bare state dict are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from deploylab.errors import DeployLabError
from deploylab.text import first_line

MAX_KEYS_LISTED = 12


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (bare, or under a ``state_dict``/``model`` key)."""
    path = Path(path)
    if not path.is_file():
        raise DeployLabError(
            f"checkpoint {str(path)!r} does not exist; pass the path of a .pth/.pt file "
            "(or omit --checkpoint to use the model's default weights)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        text = str(exc).strip()
        if "Weights only load failed" in text:
            # torch's message goes on to suggest weights_only=False, which would run any
            # code pickled in the file: not advice to pass on for an unknown file.
            detail = "corrupt, or it pickles objects other than tensors"
        else:
            detail = first_line(exc, limit=200)
        raise DeployLabError(
            f"checkpoint {str(path)!r} could not be read as a PyTorch state dict with "
            f"weights_only=True ({detail}); re-download it, or re-save it with "
            "torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DeployLabError(
            f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict of tensors; "
            "save it with torch.save(model.state_dict(), path)"
        )
    odd = [k for k in obj if not isinstance(k, str)]
    if odd:
        raise DeployLabError(
            f"checkpoint {str(path)!r} has keys that are not parameter names ({', '.join(map(repr, odd[:3]))}); "
            "a state dict maps names like 'conv1.weight' to tensors: save it with torch.save(model.state_dict(), path)"
        )
    return dict(obj)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_LISTED])
    more = len(keys) - MAX_KEYS_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")


def state_dict_mismatches(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable problems between ``model``'s parameters/buffers and ``state`` (empty if it fits)."""
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes: {_listed(wrong_shape)}")
    return problems


def load_state_dict_into(
    model: nn.Module, source: str | Path | Mapping[str, torch.Tensor]
) -> nn.Module:
    """Load ``source`` (a path or a state dict) into ``model`` strictly.

    Raises :class:`DeployLabError` listing every missing, unexpected or wrongly shaped key.
    """
    state = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    problems = state_dict_mismatches(model, state)
    if problems:
        where = f"checkpoint {str(source)!r}" if isinstance(source, (str, Path)) else "state dict"
        raise DeployLabError(
            f"{where} does not fit {type(model).__name__}: " + "; ".join(problems)
            + ". Use a checkpoint made for this model (or convert its keys)"
        )
    model.load_state_dict(state, strict=True)
    return model
