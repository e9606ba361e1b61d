"""mmcls 0.25 / mmcv 1.7 glue in one place: the quiet import, config lookup, classifier patches.

The notes' route runs OpenMMLab's classifier, which is an optional, old and noisy
dependency: importing mmcv warns about its 2.0 rename and missing compiled ops, and
torch's extension loader logs "No CUDA runtime is found". Models, the preprocessing
pipeline and the rewriters all need some of it; they import it from here (downward), so
no lower layer reaches up into :mod:`deploylab.models` for it.

Nothing here imports mmcv or mmcls at module import time.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from deploylab.errors import DeployLabError, require

#: What to install for the mmcls route (named in every missing-dependency error).
MMCLS_EXTRA = "mmcv==1.7.2 mmcls==0.25.0 (see the README: mmcv needs --no-build-isolation)"
MMCLS_CONFIG_NAME = "resnet18_8xb32_in1k.py"


@contextlib.contextmanager
def _import_noise_muted() -> Iterator[None]:
    cpp_logger = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)  # "No CUDA runtime is found": irrelevant on CPU
    try:
        with warnings.catch_warnings():
            # mmcv 1.x warns about its 2.0 rename and missing compiled ops at import;
            # neither matters for the pure-Python parts the course uses.
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        cpp_logger.setLevel(level)


def quiet_mmcv_import(purpose: str = "reading an mmcls config"):
    """Import mmcv (only mmcv: its ``Config``) without its import-time noise; returns the module."""
    with _import_noise_muted():
        return require("mmcv", MMCLS_EXTRA, purpose)


def quiet_mmcls_import():
    """Import ``mmcls.apis`` (and mmcv) without the import-time noise; returns ``mmcls.apis``."""
    with _import_noise_muted():
        require("mmcv", MMCLS_EXTRA, "the mmcls route")
        return require("mmcls.apis", MMCLS_EXTRA, "the mmcls route")


def mmcls_config_path(name: str = MMCLS_CONFIG_NAME) -> Path:
    """Path of an mmcls config: an existing file, or a config name inside the installed mmcls."""
    candidate = Path(name)
    if candidate.is_file():
        return candidate
    quiet_mmcls_import()
    import mmcls

    configs = Path(mmcls.__file__).parent / ".mim" / "configs"
    matches = sorted(configs.rglob(candidate.name)) if configs.is_dir() else []
    if not matches:
        raise DeployLabError(
            f"mmcls config {name!r} is neither a file nor a config of the installed mmcls "
            f"({configs}); give a path to a config file, e.g. mmcls:{MMCLS_CONFIG_NAME}"
        )
    return matches[0]


def classifier_method_patches() -> list[tuple[type, str, Callable]]:
    """``(class, method name, replacement)`` that make ``model(x)`` of an mmcls 0.25
    ImageClassifier return its score tensor; :func:`deploylab.rewrite.mmcls_classifier_rewrites`
    registers them as method rewrites (each replacement takes ``(ctx, self, ...)``).

    - ``BaseClassifier.forward(img, return_loss=True)`` -> the test path ``simple_test(img)``
      whatever ``return_loss`` says;
    - ``LinearClsHead.simple_test`` / ``ClsHead.simple_test`` -> the scores without
      post-processing (eager mmcls returns a list of numpy arrays), logits unless the
      rewrite options say ``{"softmax": True}``.
    """
    quiet_mmcls_import()
    from mmcls.models.classifiers.base import BaseClassifier
    from mmcls.models.heads.cls_head import ClsHead
    from mmcls.models.heads.linear_head import LinearClsHead

    def forward(ctx, self, img, return_loss=True, **kwargs):
        # Training needs labels; a deployed classifier only ever runs the test path.
        return self.simple_test(img, **kwargs)

    def head_simple_test(ctx, self, x, softmax=None, post_process=None):
        return ctx.original(self, x, softmax=bool(ctx.option("softmax", False)), post_process=False)

    return [(BaseClassifier, "forward", forward), (LinearClsHead, "simple_test", head_simple_test),
            (ClsHead, "simple_test", head_simple_test)]
