"""Running code after every training iteration, as a context manager.

``Swarm`` and the strategies both hook the user's optimizer this way (as torchft's ``LocalSGD``
does), so that the training loop stays an ordinary PyTorch loop.  The swarm counts iterations to
know when a round is due, and every particle must count the same: a ``GradScaler`` that skips
``optimizer.step()`` (inf/NaN gradients under fp16) would leave that particle a step behind and
the next round would hang.  So with a ``scaler`` the count is taken at ``scaler.update()``, which
a scaled loop calls every iteration, skipped step or not; with ``count="manual"`` nothing is
hooked and the loop calls ``step_done()`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

COUNTS = ("optimizer", "manual")


class _AfterUpdate:
    """``fn()`` after every ``scaler.update()`` (an instance attribute shadowing the method,
    removed again by :meth:`remove`)."""

    def __init__(self, scaler: Any, fn: Callable[[], None]) -> None:
        self.scaler, original = scaler, scaler.update

        def update(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            fn()
            return out

        scaler.update = update

    def remove(self) -> None:
        del self.scaler.update


class StepHook:
    """While entered, ``_after_step()`` runs after every ``optimizer.step()`` (or every
    ``scaler.update()`` when a ``scaler`` is set; never when ``count`` is ``"manual"``)."""

    optimizer: torch.optim.Optimizer
    scaler: Any = None
    count: str = "optimizer"
    _hook: Any = None

    def __enter__(self) -> Any:
        if self.count == "manual":
            return self
        if self.scaler is not None:
            self._hook = _AfterUpdate(self.scaler, self._after_step)
        else:
            self._hook = self.optimizer.register_step_post_hook(self._after_step)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def step_done(self) -> None:
        """Count one training iteration by hand (``count="manual"``): call it once per
        iteration on every particle, whether or not ``optimizer.step()`` ran."""
        if self.count != "manual":
            raise RuntimeError("step_done() is for count='manual'; the hook counts steps already")
        self._after_step()

    def _after_step(self, *_: object) -> None:
        raise NotImplementedError
