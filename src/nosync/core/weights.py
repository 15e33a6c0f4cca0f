"""A particle's position as one flat vector, and back.

Parameters and floating-point buffers (BatchNorm running statistics) are the position the rules
move; integer buffers (``num_batches_tracked``) travel only when a particle is replaced whole.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``torch.compile`` and DDP wrappers (or the model itself)."""
    while True:
        if type(model).__name__ == "OptimizedModule":  # torch.compile's (no _dynamo import)
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _float_tensors(module: nn.Module) -> list[Tensor]:
    return [p for p in module.parameters()] + [b for b in module.buffers() if b.is_floating_point()]


def _int_tensors(module: nn.Module) -> list[Tensor]:
    return [b for b in module.buffers() if not b.is_floating_point()]


def float_tensors(model: nn.Module) -> list[Tensor]:
    return _float_tensors(unwrap(model))


def flatten_weights(model: nn.Module, integer: bool = False) -> Tensor:
    """A particle's position: parameters and float buffers (or integer buffers) as a vector."""
    module = unwrap(model)
    tensors = _int_tensors(module) if integer else _float_tensors(module)
    if not tensors:
        return torch.empty(0, dtype=torch.int64 if integer else torch.float32)
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def load_weights(model: nn.Module, flat: Tensor, integer: bool = False) -> None:
    """Write a vector made by ``flatten_weights`` back into the model, in place."""
    module = unwrap(model)
    tensors = _int_tensors(module) if integer else _float_tensors(module)
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n
