"""Running code after every ``optimizer.step()``, as a context manager.

``Swarm`` and the strategies both hook the user's optimizer this way (as torchft's ``LocalSGD``
does), so that the training loop stays an ordinary PyTorch loop.
"""

from __future__ import annotations

from typing import Any

import torch


class StepHook:
    """While entered, ``_after_step()`` runs after every ``optimizer.step()``."""

    optimizer: torch.optim.Optimizer
    _hook: Any = None

    def __enter__(self) -> Any:
        self._hook = self.optimizer.register_step_post_hook(self._after_step)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _after_step(self, *_: object) -> None:
        raise NotImplementedError
