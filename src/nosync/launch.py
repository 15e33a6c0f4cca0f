"""Starting the ranks: torch's elastic launcher on one machine, or a worker under torchrun.

``nosync train --workers N`` calls :func:`launch`, which starts N local ranks through
``torch.distributed.launcher.api.elastic_launch`` (a c10d rendezvous on a free local port, the
same machinery as ``torchrun --standalone``).  Under an external ``torchrun`` (for example a
multi-node job) the same command finds the launcher's environment and runs as one worker.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .config import TrainConfig
from .errors import UserError


def under_launcher() -> bool:
    """True when a torchrun-style launcher started this process as one rank."""
    return "TORCHELASTIC_RUN_ID" in os.environ or {"RANK", "WORLD_SIZE"} <= os.environ.keys()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_budget(requested: int, local_ranks: int) -> int:
    """Threads per rank: the cores shared out between the ranks on this machine, at least one."""
    return requested or max(1, cpu_count() // max(1, local_ranks))


def worker(cfg_dict: dict[str, Any]) -> dict[str, Any] | None:
    """One rank, start to finish (module level, so the spawn start method can pickle it)."""
    from .strategies import Topology
    from .swarm import particle_groups
    from .train import train

    cfg = TrainConfig(**cfg_dict)
    torch.set_num_threads(thread_budget(cfg.threads, int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    timeout = timedelta(seconds=cfg.timeout)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=timeout)
    try:
        if dist.get_world_size() != cfg.workers:
            raise UserError(
                f"workers: the launcher started {dist.get_world_size()} ranks but the "
                f"configuration asks for {cfg.workers}"
            )
        swarm_group, particle_group = particle_groups(cfg.ranks_per_particle, timeout)
        topo = Topology(
            dist.get_rank(),
            dist.get_world_size(),
            cfg.ranks_per_particle,
            swarm_group,
            particle_group,
        )
        return train(cfg, topo)
    finally:
        dist.destroy_process_group()


def launch(cfg: TrainConfig) -> dict[str, Any] | None:
    """Run ``cfg`` on ``cfg.workers`` local ranks; returns rank 0's summary."""
    if under_launcher():
        return worker(cfg.to_dict())
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    os.environ.setdefault("LOGLEVEL", "ERROR")
    os.environ["OMP_NUM_THREADS"] = str(thread_budget(cfg.threads, cfg.workers))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=cfg.workers,
        run_id=f"nosync-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    results = elastic_launch(config, worker)(cfg.to_dict())
    return results[0]
