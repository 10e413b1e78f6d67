"""Forward hooks that ``torch.compile`` runs without a graph break or a recompilation.

Dynamo traces a submodule's forward hooks into the compiled graph, and everything the hook's
Python reads becomes a *guard* (``self.step == 3``, ``name not in order``, the length of a
list it appends to): a guard that fails at the next call recompiles the graph — up to the
recompile limit, after which the frame falls back to eager. A ``.item()`` (``float(t)``) is a
graph break. So inside a compiled region a watcher's hook does one thing only: it passes the
tensor it observes to an *opaque operator*, ``gradsight::observe(x, sink, key)``. Dynamo and
inductor do not look inside it (its fake implementation does nothing), the graph keeps it in
order (it declares that it writes ``sink``, a one-element tensor it never touches, so no
pass removes it), and at run time its Python implementation looks up ``key`` in a registry
and calls the watcher's eager code on the real tensor — where the step counter, the
schedule, the reducers' caches and their Python dictionaries are read at no guard's cost.

What stays true under compilation:

* the traced hook reads only constants (its key) and the grad mode, which dynamo guards on
  for every graph anyway; eager calls (an uncompiled model) skip the operator entirely;
* removing a hook releases its key: a graph compiled while the hook was installed still
  calls the operator (dynamo does not guard on hooks: ``skip_nnmodule_hook_guards``), which
  then does nothing;
* the converse: hooks added after a model was compiled are not in its graph — watch a
  compiled model before its first forward (the watcher says so when it sees no forward);
* while a compiled model is watched, dynamo guards on module hooks (:func:`guard_hooks`):
  without those guards two instances of one class compiled in one process share one graph,
  hooks or not, so the watched model could run its twin's hook-less graph (its records then
  lack their activations) and the twin the watched model's hooks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from ._torch import require_torch

#: key → the eager callback of a live hook (removed when the hook is released).
_CALLBACKS: dict[int, Callable[[Any], None]] = {}
_KEYS = itertools.count(1)
#: the value of dynamo's ``skip_nnmodule_hook_guards`` before the first live watcher of a
#: compiled model set it, one entry per such watcher (restored when the last one ends)
_HOOK_GUARDS: list[bool] = []
_OP: list[Any] = []  # the registered operator and its sink, made on first use


def _observe_op() -> tuple[Any, Any]:
    """``torch.ops.gradsight.observe`` and its sink tensor, registered once per process."""
    if _OP:
        return _OP[0], _OP[1]
    torch = require_torch()

    # the schema is spelled out: this module's annotations are strings (no torch at import)
    @torch.library.custom_op("gradsight::observe", mutates_args=("sink",),
                             schema="(Tensor x, Tensor(a!) sink, int key) -> ()")
    def observe(x: Any, sink: Any, key: int) -> None:
        callback = _CALLBACKS.get(key)
        if callback is not None:
            callback(x)

    @observe.register_fake
    def _(x: Any, sink: Any, key: int) -> None:
        return None

    @torch.library.custom_op("gradsight::observe_all", mutates_args=("sink",),
                             schema="(Tensor[] xs, Tensor(a!) sink, int[] keys) -> ()")
    def observe_all(xs: Any, sink: Any, keys: Any) -> None:
        for x, key in zip(xs, keys, strict=True):
            callback = _CALLBACKS.get(key)
            if callback is not None:
                callback(x)

    @observe_all.register_fake
    def _(xs: Any, sink: Any, keys: Any) -> None:
        return None

    _OP.extend([torch.ops.gradsight.observe.default, torch.zeros(1),
                torch.ops.gradsight.observe_all.default])
    return _OP[0], _OP[1]


def guard_hooks(on: bool) -> None:
    """Make dynamo guard on module hooks (``on``) or give back its own setting (when the
    last watcher of a compiled model that asked for the guards ends).

    By default dynamo does not guard on hooks (``skip_nnmodule_hook_guards``), and a graph
    compiled for one instance of a class serves every instance: a watched model and an
    unwatched twin would run each other's graphs. With the guards each gets its own graph;
    removing the watcher's hooks at the end then recompiles the model's graph once.
    """
    config = require_torch()._dynamo.config
    if on:
        _HOOK_GUARDS.append(bool(config.skip_nnmodule_hook_guards))
        config.skip_nnmodule_hook_guards = False
    elif _HOOK_GUARDS:
        first = _HOOK_GUARDS[0]
        _HOOK_GUARDS.pop()
        if not _HOOK_GUARDS:
            config.skip_nnmodule_hook_guards = first


class ForwardBatch:
    """One operator call per compiled forward of the model instead of one per hook.

    Hooks on the model itself open a list before its forward and, after it, pass what the
    submodules' hooks observed to ``gradsight::observe_all`` at once — an opaque call costs
    microseconds, paid at every step (recorded or not) as long as the graph holds it. The
    list lives only inside the trace (dynamo guards on none of it); where the model's own
    hooks run eagerly (only a submodule was compiled) ``pending`` is None and each hook calls
    ``gradsight::observe`` itself.
    """

    __slots__ = ("pending", "_handles", "_torch", "_sink", "_op_all")

    def __init__(self, model: Any) -> None:
        self._torch = require_torch()
        _skip_hooks_as_frames()
        self._sink = _observe_op()[1]
        self._op_all = _OP[2]
        self.pending: list[tuple[int, Any]] | None = None
        self._handles = [model.register_forward_pre_hook(self._start),
                         model.register_forward_hook(self._flush)]

    def _start(self, module: Any, args: Any) -> None:
        self.pending = [] if self._torch.compiler.is_compiling() else None

    def _flush(self, module: Any, args: Any, output: Any) -> None:
        pending, self.pending = self.pending, None
        if pending:
            self._op_all([x for _, x in pending], self._sink, [key for key, _ in pending])

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class CompileSafeHook:
    """A forward hook calling ``on_output(output)`` — directly in eager mode, through the
    opaque operator inside a compiled region.

    grad_only : call it only for forwards with gradients enabled (evaluation under
        ``torch.no_grad()`` is ignored). Under compilation the grad mode is read while
        tracing: the compiled forward itself runs with gradients disabled.
    Only tensor outputs are passed on; ``release`` must be called when the hook is removed.
    """

    __slots__ = ("on_output", "grad_only", "key", "batch", "_torch", "_op", "_sink")

    def __init__(self, on_output: Callable[[Any], None], grad_only: bool = True,
                 batch: ForwardBatch | None = None) -> None:
        torch = require_torch()
        self.on_output, self.grad_only, self._torch = on_output, grad_only, torch
        self.batch = batch  # the model's ForwardBatch: one operator call per forward
        self.key = next(_KEYS)
        _CALLBACKS[self.key] = on_output
        self._op, self._sink = _observe_op()

    def __call__(self, module: Any, args: Any, output: Any) -> None:
        torch = self._torch
        if isinstance(output, (tuple, list)) and output:  # RNN (out, h), MHA (out, weights)
            output = output[0]
        if not isinstance(output, torch.Tensor):
            return
        if self.grad_only and not torch.is_grad_enabled():
            return
        if torch.compiler.is_compiling():
            batch = self.batch
            if batch is not None and batch.pending is not None:
                batch.pending.append((self.key, output.detach()))
            else:
                self._op(output.detach(), self._sink, self.key)
        else:
            self.on_output(output)

    def release(self) -> None:
        _CALLBACKS.pop(self.key, None)


def make_hook(on_output: Callable[[Any], None], grad_only: bool = True,
              batch: ForwardBatch | None = None) -> CompileSafeHook:
    """A :class:`CompileSafeHook` whose code dynamo never compiles as a frame of its own.

    ``module.compile()`` (in place) compiles ``module._call_impl``; submodules called from a
    frame dynamo does not trace (``nn.Sequential.forward`` is one) run their hooks as new
    frames, and dynamo would compile each hook as a graph of its own, guarded on its key.
    The hook's code object is marked *skip, and skip what it calls* for dynamo's frame
    evaluation — a per-code setting that leaves inlining alone: where a traced forward calls
    the hook it is still traced (one opaque operator, no graph break), and where it runs as a
    frame it simply runs eagerly. ``torch.compiler.disable`` would also stop the frame, but
    inlined it is a graph break."""
    _skip_hooks_as_frames()
    return CompileSafeHook(on_output, grad_only, batch)


_SKIPPED_FRAMES: list[bool] = []


def _skip_hooks_as_frames() -> None:
    """Mark the hooks' code (each hook, and the model's own pre- and post-hook of
    :class:`ForwardBatch`) *skip as a frame, and skip what it calls*, once per process.

    ``torch.compile(model)`` of a class whose ``_call_impl`` dynamo does not trace compiles
    ``forward`` as the frame: the model's own hooks would each become a graph of their own."""
    if _SKIPPED_FRAMES:
        return
    require_torch()
    # dynamo's internals: imported once torch is known to load, at the first watch
    from torch._dynamo.eval_frame import set_code_exec_strategy
    from torch._dynamo.types import FrameAction, FrameExecStrategy

    for code in (CompileSafeHook.__call__.__code__, ForwardBatch._start.__code__,
                 ForwardBatch._flush.__code__):
        set_code_exec_strategy(code, FrameExecStrategy(FrameAction.SKIP, FrameAction.SKIP))
    _SKIPPED_FRAMES.append(True)


def release_all(hooks: list[CompileSafeHook]) -> None:
    for hook in hooks:
        hook.release()
