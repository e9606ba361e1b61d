"""Models the course deploys and the registry that resolves model specs.

Importing this package is cheap (the command line reads ``MODEL_SPEC_HELP`` before it
knows whether torch is needed); the registry and its torch imports load on first use.
"""

MODEL_SPEC_HELP = (
    "lenet, resnet18, efficientnet_lite0 (efficientnet_lite1..4 with --checkpoint), matmul_mlp, "
    "mmcls:<config path or name>, torchvision:<model name>"
)

__all__ = ["MODEL_SPEC_HELP", "ModelBundle", "parse_shape", "resolve_model"]


def __getattr__(name):
    if name in ("ModelBundle", "parse_shape", "resolve_model"):
        from deploylab.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'deploylab.models' has no attribute {name!r}")
