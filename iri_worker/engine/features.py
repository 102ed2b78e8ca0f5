"""Read a representation out of a model by dotted module name.

A forward hook on the named module captures its output and then aborts the
forward pass (nothing after that layer is needed), and the hook is always
removed again, also when the forward pass fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class _StopForward(Exception):
    """Raised by the capture hook so layers after the requested one never run."""


@contextmanager
def _hooked(module: nn.Module, hook) -> Iterator[None]:
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()  # never leave a hook behind (lucent's mistake)


def extract(model: nn.Module, layer_module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``model(x)`` up to ``layer_module`` and return that module's output.

    ``x`` is whatever the model takes (already normalised). The output keeps its
    autograd graph, so gradients can flow back to ``x``. If the module runs more
    than once per forward pass the first call wins; ``probe_layers`` keeps such
    modules out of the public layer list, so that never happens for listed names.
    """
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer output is {type(output).__name__}, not a Tensor")
        captured.append(output)
        raise _StopForward

    with _hooked(layer_module, hook):
        try:
            model(x)
        except _StopForward:
            pass
    if not captured:
        raise RuntimeError("the requested layer did not run during the forward pass")
    return captured[0]


def probe_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Dotted names of the submodules that run exactly once and output one Tensor.

    Modules that never run (``ModuleList`` containers) or run several times
    (a shared ``relu`` in torchvision's ``BasicBlock``, EfficientNet's top-level
    ``_swish``) have no single well-defined output, so they are left out; the
    enclosing block is the layer to ask for instead. Order = definition order.
    """
    calls: dict[str, int] = {}
    tensor_out: dict[str, bool] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            tensor_out[name] = isinstance(output, torch.Tensor)

        return hook

    names = [name for name, _ in model.named_modules() if name]
    modules = dict(model.named_modules())
    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [n for n in names if calls.get(n) == 1 and tensor_out.get(n, False)]
