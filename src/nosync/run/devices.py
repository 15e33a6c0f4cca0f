"""Where a rank computes: its device, the process-group backend that follows from it, mixed
precision and the device facts a run reports.

``--device auto`` is ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.  With one rank per
GPU the default process group is ``cpu:gloo,cuda:nccl``: CUDA tensors (the swarm's weights,
DDP's gradients, the monitor's weight gathers) go over NCCL, CPU tensors (the stop vote, the
monitor's rows, object collectives, checkpoint barriers) over gloo, on every group made from it.
NCCL refuses two ranks on one GPU, so when a machine runs more ranks than it has GPUs the ranks
share the GPUs and the whole group is gloo (the transport stages CUDA tensors through the CPU).

Nothing here changes a CPU run: the CPU path is the code that ran before devices existed.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from nosync.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
CPU = torch.device("cpu")


def check(spec: str) -> None:
    """``--device cuda`` on a machine without CUDA is bad input (one line, exit 2)."""
    if spec == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda or "none"
        raise UserError(
            f"device: --device cuda but CUDA is not available (torch {torch.__version__}, "
            f"CUDA build {built}); use --device cpu or auto"
        )


@dataclass(frozen=True)
class Where:
    """A rank's device and the backend its default process group is initialised with."""

    device: torch.device
    backend: str
    shared: bool = False  # more ranks than GPUs on this machine: traffic over gloo


def pick(spec: str, local_rank: int = 0, local_ranks: int = 1) -> Where:
    """The device for ``--device spec`` of local rank ``local_rank`` of ``local_ranks``."""
    check(spec)
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return Where(CPU, "gloo")
    gpus = torch.cuda.device_count()
    device = torch.device("cuda", local_rank % gpus)
    if local_ranks > gpus:  # NCCL: "Duplicate GPU detected"
        return Where(device, "gloo", shared=True)
    return Where(device, "cpu:gloo,cuda:nccl")


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """torch's autocast around forward and loss: bf16 under ``--precision bf16`` (CPU too).
    Under fp32 nothing: a disabled ``torch.autocast`` still costs tens of microseconds a step
    (issue 17)."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def fits(nbytes: int, device: torch.device) -> bool:
    """A dataset of ``nbytes`` may live on ``device`` (a quarter of its free memory at most)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 4


def facts(device: torch.device, precision: str) -> dict[str, Any]:
    """What ``summary.json`` says about where the run computed."""
    out: dict[str, Any] = {"device": str(device), "precision": precision}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
        out["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    return out
