"""Devices on a CPU-only machine: the CPU path, the combined backend's syntax over gloo, bf16
autocast, compiled models, skipped optimizer steps and the thread count.  The CUDA path itself
is ``tests/e2e/test_gpu.py`` (``pytest -m gpu``, skipped here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from nosync import LocalWorld, Swarm
from nosync.cli import main
from nosync.core.weights import flatten_weights, load_weights
from nosync.launch.launcher import thread_budget
from nosync.run.devices import autocast, pick

from support.threads import in_threads

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@no_cuda
def test_device_cuda_without_cuda_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["train", "--device", "cuda", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nosync: error: device: --device cuda but CUDA")
    assert "Traceback" not in captured.err and not out.exists()


@no_cuda
def test_auto_is_the_cpu_with_gloo_without_cuda() -> None:
    assert pick("auto", 1, 2).device == torch.device("cpu") == pick("cpu").device
    assert pick("auto").backend == "gloo" and not pick("auto").shared


def test_bf16_autocast_on_cpu_and_fp32_untouched() -> None:
    net, x = nn.Linear(4, 3), torch.randn(2, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert net(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert torch.equal(net(x), net(x)) and net(x).dtype == torch.float32


def test_weights_of_a_compiled_model_are_its_modules() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    compiled = torch.compile(net, backend="eager")
    flat = flatten_weights(compiled)
    assert torch.equal(flat, flatten_weights(net))
    load_weights(compiled, torch.zeros_like(flat))
    assert not flatten_weights(net).any()


# ---- rounds stay aligned when a GradScaler skips optimizer steps ---------------------------------
class SkippingScaler:
    """A GradScaler's interface that skips ``optimizer.step()`` at the given iterations."""

    def __init__(self, skip: set[int]) -> None:
        self.skip, self.iteration = skip, 0

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.iteration += 1
        if self.iteration not in self.skip:
            optimizer.step()

    def update(self) -> None:
        pass


def _scaled_loop(endpoint: Any, i: int, make_scaler: Any, count: str = "optimizer") -> Any:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = make_scaler(i)
    swarm = Swarm(
        model, opt, fitness=lambda m: float(m.weight.detach().abs().sum()), period=4, pressure=0.5,
        transport=endpoint, scaler=scaler if count == "optimizer" else None, count=count,
    )  # fmt: skip
    g = torch.Generator().manual_seed(i)
    skipped = 0
    with swarm:
        for iteration in range(1, 13):
            x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
            opt.zero_grad()
            scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
            if i == 0 and iteration in (2, 6):  # inf gradients on particle 0: a real scaler skips
                model.weight.grad.fill_(float("inf"))
            before = flatten_weights(model)
            scaler.step(opt)
            skipped += int(torch.equal(before, flatten_weights(model)))
            scaler.update()
            if count == "manual":
                swarm.step_done()
    return swarm.step, [r["step"] for r in swarm.history], skipped


@pytest.mark.parametrize(
    ("make_scaler", "count"),
    [
        (lambda i: SkippingScaler({2, 6} if i == 0 else set()), "optimizer"),
        (lambda i: torch.amp.GradScaler("cpu", init_scale=1.0), "optimizer"),
        (lambda i: SkippingScaler({2, 6} if i == 0 else set()), "manual"),
    ],
    ids=["fake-scaler", "torch-gradscaler", "manual-count"],
)
def test_skipped_optimizer_steps_do_not_desynchronise_rounds(make_scaler: Any, count: str) -> None:
    got = in_threads(2, lambda ep, i: _scaled_loop(ep, i, make_scaler, count))
    assert not any(isinstance(g, BaseException) for g in got), got
    (steps0, rounds0, skipped0), (steps1, rounds1, _) = got
    assert skipped0 >= 2  # particle 0 really skipped optimizer steps
    assert steps0 == steps1 == 12 and rounds0 == rounds1 == [4, 8, 12]


def test_step_done_refuses_when_the_hook_counts() -> None:
    model = nn.Linear(2, 2)
    swarm = Swarm(model, torch.optim.SGD(model.parameters(), lr=0.1), fitness=lambda m: 0.0,
                  transport=LocalWorld(1).endpoint(0))  # fmt: skip
    with pytest.raises(RuntimeError, match="count='manual'"):
        swarm.step_done()
    with pytest.raises(ValueError, match="count must be one of"):
        Swarm(
            model, swarm.optimizer, fitness=lambda m: 0.0, transport=swarm.transport, count="scaler"
        )


# ---- threads: --threads, else the user's OMP_NUM_THREADS, else cores / ranks --------------------
def test_thread_budget_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_budget(0, 2) == 3 and thread_budget(5, 2) == 5
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert thread_budget(0, 1) >= 1 and thread_budget(2, 8) == 2
