"""The one exception type deploylab raises for bad input.

Every error a user can cause (an unknown model name, a missing checkpoint, a wrong
input shape, a corrupt ONNX file) is a :class:`DeployLabError`. Its message names the
offending value and says what to do; the command line prints it on one line and
exits with status 2.
"""


class DeployLabError(ValueError):
    """Bad input to deploylab: the message names the value and the fix."""


class MissingDependencyError(DeployLabError, ImportError):
    """An optional engine or library is not installed."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise an error naming what to install.

    ``extra`` is the pip requirement to suggest, ``purpose`` what it is needed for.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python module {module!r}, which is not importable "
            f"({exc}); install it with: pip install {extra}"
        ) from exc


class EngineError(DeployLabError):
    """An engine refused a model or an input. The message is for people (one line, the fix);
    ``engine_text`` keeps everything the engine said, for tools that read it (e.g. the support
    matrix telling "not implemented" from "bad model")."""

    def __init__(self, message: str, engine_text: str = ""):
        super().__init__(message)
        self.engine_text = engine_text
