"""Models the course deploys and the registry that resolves model specs."""

from deploylab.models.registry import MODEL_SPEC_HELP, ModelBundle, parse_shape, resolve_model

__all__ = ["MODEL_SPEC_HELP", "ModelBundle", "parse_shape", "resolve_model"]
