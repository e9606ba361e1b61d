"""Rewriters: change a function, a method or a TorchScript symbolic only while exporting.

A model written for training often does things an exporter or an engine cannot take
(numpy post-processing, a ``return_loss`` switch, an operator one engine lacks). The
fix belongs to deployment, not to the model's source: MMDeploy's idea is to *rewrite*
those pieces while exporting and put them back afterwards. Here a rewrite is an
explicit object:

    registry = RewriteRegistry()

    @registry.register_method(LinearClsHead, "simple_test")
    def simple_test(ctx, self, x, **kwargs):
        return ctx.original(self, x, softmax=False, post_process=False)

    with rewriting(backend="openvino", registry=registry):
        torch.onnx.export(model, ...)

- targets are the objects themselves (a module and an attribute name, a class and a
  method name), never dotted strings executed or looked up by magic;
- a replacement receives a :class:`RewriteContext` first (the original callable, the
  backend, the options given to :func:`rewriting`);
- a rewrite registered with ``backend="openvino"`` is active only inside
  ``rewriting(backend="openvino")``; one registered without a backend is always active;
- :func:`rewriting` restores every patched object on exit, also when the body raises,
  and nests: an inner rewrite of the same target wraps the outer one
  (``ctx.original`` is the outer replacement) and the outer one is back afterwards.

Patching a module attribute changes what code that looks the name up *in that module*
sees: patch ``torch.nn.functional.gelu`` and a model calling ``F.gelu(x)`` follows;
a model that did ``from torch.nn.functional import gelu`` at import time keeps its own
reference (patch that module instead). Rewrites change global state: do not export in
two threads at once.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from deploylab.errors import DeployLabError

_MISSING = object()


@dataclass(frozen=True)
class RewriteContext:
    """What a replacement knows: the callable it replaces, the backend, the options.

    ``original`` is the function (or unbound method, or symbolic) that was in place when
    the rewrite started; call it to delegate. ``backend`` is the one passed to
    :func:`rewriting` (None when no backend was named); ``options`` the mapping passed
    there (e.g. ``{"softmax": True}``).
    """

    target: str
    original: Callable | None
    backend: str | None
    options: Mapping = field(default_factory=dict)

    def option(self, name: str, default=None):
        return self.options.get(name, default)


@dataclass
class _Rewrite:
    kind: str  # "function", "method" or "symbolic"
    owner: object  # module, class, or None for symbolics
    name: str  # attribute / method name, or "domain::op" for symbolics
    opset: int | None
    backends: frozenset[str] | None  # None: every backend
    replacement: Callable

    @property
    def target(self) -> str:
        if self.kind == "symbolic":
            return f"symbolic {self.name} (opset {self.opset})"
        owner = getattr(self.owner, "__qualname__", None) or getattr(self.owner, "__name__", repr(self.owner))
        module = getattr(self.owner, "__module__", None)
        prefix = f"{module}." if module and self.kind == "method" else ""
        return f"{prefix}{owner}.{self.name}"

    def active_for(self, backend: str | None) -> bool:
        return self.backends is None or (backend is not None and backend in self.backends)


def _backend_set(backend: str | Iterable[str] | None) -> frozenset[str] | None:
    if backend is None:
        return None
    names = [backend] if isinstance(backend, str) else list(backend)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise DeployLabError(f"backend must be a backend name, a list of names or None, got {backend!r}")
    return frozenset(n.lower() for n in names)


class RewriteRegistry:
    """A set of rewrites, each applied by :func:`rewriting` for the backends it names."""

    def __init__(self, name: str = "rewrites"):
        self.name = name
        self._rewrites: list[_Rewrite] = []

    def __len__(self) -> int:
        return len(self._rewrites)

    def __repr__(self) -> str:
        return f"RewriteRegistry({self.name!r}, {len(self)} rewrites)"

    def describe(self) -> list[str]:
        """One line per rewrite: target and the backends it is active for."""
        return [f"{r.target} [{', '.join(sorted(r.backends)) if r.backends else 'all backends'}]"
                for r in self._rewrites]

    def active(self, backend: str | None) -> list[_Rewrite]:
        return [r for r in self._rewrites if r.active_for(backend)]

    # -- registration
    def register_function(self, target_module, attr_name: str, backend: str | Iterable[str] | None = None):
        """Decorator: replace ``target_module.attr_name`` with ``fn(ctx, *args, **kwargs)``.

        ``target_module`` is the module (or any object) whose attribute callers look up.
        """
        if not isinstance(attr_name, str) or getattr(target_module, attr_name, _MISSING) is _MISSING:
            raise DeployLabError(
                f"{getattr(target_module, '__name__', target_module)!r} has no attribute {attr_name!r} to rewrite"
            )
        if not callable(getattr(target_module, attr_name)):
            raise DeployLabError(f"{attr_name!r} of {target_module!r} is not callable; only functions can be rewritten")
        return self._decorator("function", target_module, attr_name, None, backend)

    def register_method(self, cls: type, method_name: str, backend: str | Iterable[str] | None = None):
        """Decorator: replace ``cls.method_name`` with ``fn(ctx, self, *args, **kwargs)``.

        The method may be inherited; on restore ``cls`` gets back exactly what it had
        (its own definition, or nothing so that inheritance applies again).
        """
        if not isinstance(cls, type):
            raise DeployLabError(f"register_method needs a class, got {cls!r}")
        raw = _lookup_raw(cls, method_name)
        if raw is _MISSING:
            raise DeployLabError(f"class {cls.__qualname__} has no method {method_name!r} to rewrite")
        if isinstance(raw, (staticmethod, classmethod, property)):
            raise DeployLabError(
                f"{cls.__qualname__}.{method_name} is a {type(raw).__name__}; register_method rewrites plain "
                "methods - rewrite the function it wraps with register_function instead"
            )
        return self._decorator("method", cls, method_name, None, backend)

    def register_symbolic(self, op_name: str, opset: int, backend: str | Iterable[str] | None = None):
        """Decorator: a TorchScript-exporter symbolic ``fn(ctx, g, *inputs, **attrs)`` for ``op_name``.

        ``op_name`` is ``"namespace::op"`` (``"aten::erf"``, ``"deploylab::soft_clip"``);
        the symbolic serves exports at ``opset`` and above (until a newer built-in
        version takes over). Registered with ``torch.onnx.register_custom_op_symbolic``
        on entering :func:`rewriting`, removed (or the previous one put back) on exit.
        """
        if not isinstance(op_name, str) or "::" not in op_name:
            raise DeployLabError(f"symbolic name must look like 'namespace::op', got {op_name!r}")
        if not isinstance(opset, int) or not 7 <= opset <= 30:
            raise DeployLabError(f"opset for {op_name!r} must be an integer opset such as 11 or 17, got {opset!r}")
        return self._decorator("symbolic", None, op_name, opset, backend)

    def _decorator(self, kind, owner, name, opset, backend):
        backends = _backend_set(backend)

        def register(fn: Callable) -> Callable:
            if not callable(fn):
                raise DeployLabError(f"a rewrite must be a function, got {fn!r}")
            self._rewrites.append(_Rewrite(kind, owner, name, opset, backends, fn))
            return fn

        return register


def _lookup_raw(cls: type, name: str):
    """The attribute as stored in the class dict along the MRO (not bound, not unwrapped)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return _MISSING


# ---------------------------------------------------------------- symbolics
# (name, opset) -> replacement symbolics deploylab has registered, innermost last. Torch
# keeps one custom symbolic per (name, opset); this stack is what lets nested
# rewrites put the outer one back.
_SYMBOLIC_STACK: dict[tuple[str, int], list[Callable]] = {}


def _torch_custom_symbolic(name: str, opset: int):
    """The custom symbolic torch currently has for (name, opset), or None.

    Reads the TorchScript exporter's registry (private, read only) so that a symbolic a
    user registered outside deploylab survives a rewrite of the same op.
    """
    try:
        from torch.onnx._internal.torchscript_exporter import registration

        group = registration.registry.get_function_group(name)
        functions = getattr(group, "_functions", None)
        if functions is not None and functions.overridden(opset):
            return functions[opset]
    except (ImportError, AttributeError, KeyError):
        pass
    return None


def _symbolic_group_exists(name: str) -> bool:
    try:
        from torch.onnx._internal.torchscript_exporter import registration

        return registration.registry.get_function_group(name) is not None
    except (ImportError, AttributeError):
        return True  # unknown layout: assume it existed, so nothing is removed


def _forget_empty_symbolic_group(name: str) -> None:
    """Drop the empty entry ``unregister_custom_op_symbolic`` leaves behind (torch 2.9-2.14).

    For an op without a built-in symbolic, torch keeps an empty function group after
    unregistering; the next export of that op then fails with "min() arg is an empty
    sequence" instead of "unrecognized namespace". Removing the group restores the
    state before the rewrite exactly. Private registry, so guarded.
    """
    try:
        from torch.onnx._internal.torchscript_exporter import registration

        group = registration.registry.get_function_group(name)
        if group is not None and not len(group._functions):
            registration.registry._registry.pop(name, None)
    except (ImportError, AttributeError, TypeError):
        pass


def _full_symbolic_name(name: str) -> str:
    return f"aten{name}" if name.startswith("::") else name


@contextlib.contextmanager
def _symbolic_patch(rewrite: _Rewrite, ctx_factory) -> Iterator[None]:
    import torch

    name, opset = _full_symbolic_name(rewrite.name), rewrite.opset
    key = (name, opset)
    previous = _torch_custom_symbolic(name, opset)
    group_existed = _symbolic_group_exists(name)
    ctx = ctx_factory(previous)

    @functools.wraps(rewrite.replacement)
    def symbolic(g, *args, **kwargs):
        return rewrite.replacement(ctx, g, *args, **kwargs)

    stack = _SYMBOLIC_STACK.setdefault(key, [])
    stack.append(symbolic)
    torch.onnx.register_custom_op_symbolic(name, symbolic, opset)
    try:
        yield
    finally:
        stack.remove(symbolic)
        if previous is not None:
            torch.onnx.register_custom_op_symbolic(name, previous, opset)
        else:
            torch.onnx.unregister_custom_op_symbolic(name, opset)
            if not group_existed:
                _forget_empty_symbolic_group(name)
        if not stack:
            _SYMBOLIC_STACK.pop(key, None)


# ---------------------------------------------------------------- functions and methods
@contextlib.contextmanager
def _attribute_patch(rewrite: _Rewrite, ctx_factory) -> Iterator[None]:
    owner, name = rewrite.owner, rewrite.name
    if rewrite.kind == "method":
        had_own = name in owner.__dict__
        saved = owner.__dict__.get(name, _MISSING)
        original = getattr(owner, name)  # plain function (unbound) for instance methods
        ctx = ctx_factory(original)

        @functools.wraps(original)
        def method(self, *args, **kwargs):
            return rewrite.replacement(ctx, self, *args, **kwargs)

        replacement = method
    else:
        had_own = True
        saved = getattr(owner, name)
        ctx = ctx_factory(saved)

        @functools.wraps(saved)
        def function(*args, **kwargs):
            return rewrite.replacement(ctx, *args, **kwargs)

        replacement = function
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        if had_own:
            setattr(owner, name, saved)
        else:
            delattr(owner, name)


@contextlib.contextmanager
def rewriting(
    backend: str | None = None,
    registry: RewriteRegistry | None = None,
    options: Mapping | None = None,
) -> Iterator[list[str]]:
    """Apply ``registry``'s rewrites for ``backend`` inside the ``with`` block.

    Active rewrites: those registered without a backend, plus those naming
    ``backend``. Yields the list of targets patched (handy to print). Everything is
    restored on exit, in reverse order, also when the block raises; nesting is safe.
    ``options`` is handed to every replacement as ``ctx.options``.
    """
    if registry is None:
        registry = DEFAULT_REGISTRY
    if not isinstance(registry, RewriteRegistry):
        raise DeployLabError(f"registry must be a RewriteRegistry, got {type(registry).__name__}")
    if backend is not None and (not isinstance(backend, str) or not backend):
        raise DeployLabError(f"backend must be a backend name such as 'openvino' or None, got {backend!r}")
    backend = backend.lower() if backend else None
    options = types.MappingProxyType(dict(options or {}))
    active = registry.active(backend)
    with contextlib.ExitStack() as stack:
        for rewrite in active:
            def make_ctx(original, _rewrite=rewrite):
                return RewriteContext(_rewrite.target, original, backend, options)

            patch = _symbolic_patch if rewrite.kind == "symbolic" else _attribute_patch
            stack.enter_context(patch(rewrite, make_ctx))
        yield [r.target for r in active]


#: The registry :func:`rewriting` uses when none is given; deploylab registers nothing in it.
DEFAULT_REGISTRY = RewriteRegistry("default")


# ---------------------------------------------------------------- mmcls
_MMCLS_REGISTRY: RewriteRegistry | None = None


def mmcls_classifier_rewrites() -> RewriteRegistry:
    """Rewrites that make ``model(x)`` of an mmcls 0.25 ImageClassifier exportable as is.

    - ``BaseClassifier.forward(img, return_loss=True)`` -> the test path
      ``simple_test(img)`` whatever ``return_loss`` says, so the notes' ``(x, False)``
      argument trick is not needed;
    - ``LinearClsHead.simple_test`` / ``ClsHead.simple_test`` -> the score tensor
      without post-processing (eager mmcls returns a list of numpy arrays), logits by
      default, probabilities with ``options={"softmax": True}``.

    The same rewrites make the eager model return that tensor, so a parity check can
    run PyTorch and the engine side by side.
    """
    global _MMCLS_REGISTRY
    if _MMCLS_REGISTRY is not None:
        return _MMCLS_REGISTRY
    from deploylab.mmcls_compat import classifier_method_patches

    registry = RewriteRegistry("mmcls classifier: model(x) -> scores tensor")
    for cls, method, replacement in classifier_method_patches():
        registry.register_method(cls, method)(replacement)
    _MMCLS_REGISTRY = registry
    return registry
