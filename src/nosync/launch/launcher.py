"""Starting the ranks: torch's elastic launcher on one machine, or a worker under torchrun.

``nosync train --workers N`` calls :func:`launch`, which checks everything it can before any
process starts (:func:`preflight`), then starts N local ranks through
``torch.distributed.launcher.api.elastic_launch`` (a c10d rendezvous on a local port, the same
machinery as ``torchrun --standalone``, but listening on loopback only: see :mod:`loopback`),
restarting them from the last checkpoint up to ``--max-restarts`` times, while it holds the run
folder's lock (``runlock``).  Under an external ``torchrun`` the same command runs as one
worker; global rank 0 then runs the same preflight, takes the lock and tells every rank its
verdict before anything is written.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from nosync.data.datasets import Batches
from nosync.errors import UserError
from nosync.launch import interrupts, lifeline, loopback, runlock
from nosync.run import attempt, checkpoint, devices
from nosync.run.config import TrainConfig

INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl+C
# imported once by the fork server the ranks start from (torch._dynamo is what the first
# optimizer imports): seconds per rank saved.  Not scikit-learn: `digits` is read from the
# cache the launcher's preflight fills (data._digits)
PRELOAD = [
    "nosync.launch._forkserver_lifeline",  # first: the fork server dies with the launcher
    "torch",
    "torch.distributed",
    "torch._dynamo",
    "torch.nn.parallel",
    "nosync.run.train",
]


class LaunchFailed(RuntimeError):
    """A worker failed and no restart was left; the message says which and why."""


class LaunchInterrupted(RuntimeError):
    """Ctrl+C (or SIGTERM) reached the launcher; workers were stopped."""


class PreflightRefused(UserError):
    """Rank 0's preflight refused the run under an external launcher; every rank stops."""


def under_launcher() -> bool:
    """True when a torchrun-style launcher started this process as one rank."""
    return "TORCHELASTIC_RUN_ID" in os.environ or {"RANK", "WORLD_SIZE"} <= os.environ.keys()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_budget(requested: int, local_ranks: int) -> int:
    """Threads per rank: ``--threads``, else the user's ``OMP_NUM_THREADS``, else the cores
    shared out between the ranks on this machine (at least one)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not requested and env.isdigit() and int(env) > 0:
        return int(env)
    return requested or max(1, cpu_count() // max(1, local_ranks))


def _explain(err: BaseException, cfg: TrainConfig) -> str:
    """One line for a worker's failure; collective failures say what they usually mean."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    low = text.lower()
    if "timed out" in low or "timeout" in low:
        return f"no answer from another rank within --timeout {cfg.timeout:g} s (a worker hung)"
    if "connection reset" in low or "connection closed" in low or "broken pipe" in low:
        return "lost contact with another rank (a worker died)"
    return text if isinstance(err, UserError) else f"{type(err).__name__}: {text}"


def _init_process_group(backend: str, timeout: timedelta) -> None:
    """``env://`` initialisation, with the store keys of each restart attempt kept apart.

    torch's elastic agent keeps one store for all attempts; without a per-attempt prefix a
    restarted rank can read the address a dead rank published and fail to connect (seen here
    on torch 2.13: the first restart after a kill -9 failed in gloo's connectFullMesh).  The
    prefix is the generation every rank agreed on (``attempt``), not this node's restart count,
    which differs between nodes after a membership change.
    """
    loopback.host_worker_store()  # a single-machine run: rank 0's store on loopback only
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    agreed = attempt.agree(store, rank, world, timeout.total_seconds())
    store = dist.PrefixStore(f"nosync/attempt-{agreed.generation}", store)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)


def worker(cfg_dict: dict[str, Any], external: bool = False) -> dict[str, Any] | None:
    """One rank, start to finish (module level, so the spawn start method can pickle it).

    ``external``: started by a torchrun-style launcher, so no preflight ran yet.
    """
    from nosync.core.placement import place
    from nosync.run.control import Interrupted, install_sigint_handler
    from nosync.run.train import train

    install_sigint_handler()  # from the start: a Ctrl+C during set-up stops at the first vote
    lifeline.protect_rank()  # no rank outlives the launcher, even after its kill -9
    cfg = TrainConfig.from_dict(cfg_dict)
    timeout = timedelta(seconds=cfg.timeout)
    device = _join(cfg, timeout)
    rank = dist.get_rank()
    lock = None
    try:
        if external:
            lock = _shared_preflight(cfg, rank)
        if dist.get_world_size() != cfg.workers:
            raise UserError(
                f"workers: the launcher started {dist.get_world_size()} ranks but the "
                f"configuration asks for {cfg.workers}"
            )
        return train(cfg, place(cfg.ranks_per_particle, timeout, device))
    except Interrupted as stop:
        if rank == 0:
            print(
                f"nosync: stopped at step {stop.step}; checkpoint saved; continue with: "
                f"nosync train --resume {cfg.out}",
                file=sys.stderr,
                flush=True,
            )
        sys.exit(INTERRUPTED)
    except PreflightRefused as err:
        if rank == 0:
            print(f"nosync: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as err:
        print(f"nosync: rank {rank}: {_explain(err, cfg)}", file=sys.stderr, flush=True)
        if cfg.verbose:
            raise
        sys.exit(1)  # the line above says why; the traceback is behind --verbose
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        if lock:
            lock.release()


def _join(cfg: TrainConfig, timeout: timedelta) -> torch.device:
    """This rank's threads and device, then the process group; returns the device."""
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    torch.set_num_threads(thread_budget(cfg.threads, local_ranks))
    where = devices.pick(cfg.device, int(os.environ.get("LOCAL_RANK", 0)), local_ranks)
    if where.device.type == "cuda":
        torch.cuda.set_device(where.device)
    _init_process_group(where.backend, timeout)
    if where.shared and dist.get_rank() == 0:
        print(
            f"nosync: {local_ranks} ranks share {torch.cuda.device_count()} GPU(s) on this "
            "machine; NCCL cannot put two ranks on one GPU, so their tensors travel over gloo",
            file=sys.stderr,
            flush=True,
        )
    return where.device


def _shared_preflight(cfg: TrainConfig, rank: int) -> runlock.RunLock | None:
    """Under an external launcher: global rank 0 runs the preflight and takes the run folder's
    lock; every rank learns its verdict (a broadcast bounded by ``--timeout``) and stops on a
    refusal before anything is written.  A restart continues the run it finds in the folder."""
    verdict: list[str | None] = [None]
    lock = None
    if rank == 0:
        try:
            restarting = attempt.restarts() > 0
            runlock.check_free(cfg.out)
            preflight(cfg, restarting=restarting, check_port=False)
            lock = runlock.acquire(cfg.out)
            if not (restarting or cfg.resume):
                _check_out(cfg)  # again, under the lock: another run may have just started
        except UserError as err:
            verdict = [str(err)]
    dist.broadcast_object_list(verdict, src=0)
    if verdict[0] is not None:
        if lock:
            lock.release()
        raise PreflightRefused(verdict[0])
    return lock


def _check_out(cfg: TrainConfig) -> None:
    """A fresh run never writes into a folder that holds another run (one that stopped before
    its first checkpoint left nothing to keep: ``runlock.held_run``)."""
    out = Path(cfg.out)
    if cfg.resume:
        checkpoint.check_resumable(out, cfg.to_dict())
    elif held := runlock.held_run(out):
        raise UserError(f"out: {out} {held}")


def check_data_fits(cfg: TrainConfig, n: int) -> None:
    """One batch per rank fits in the ``n`` training examples (the ranks would fail later)."""
    Batches(
        n,
        cfg.batch_size,
        cfg.seed,
        0,
        cfg.particles,
        shard=cfg.shard,
        ranks_per_particle=cfg.ranks_per_particle,
    )


def preflight(cfg: TrainConfig, restarting: bool = False, check_port: bool = True) -> None:
    """Every check that can fail before a process starts, so bad input writes nothing.

    ``restarting``: a restart of this run under an external launcher, which continues it.
    """
    out = Path(cfg.out)
    if not restarting:
        _check_out(cfg)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"out: cannot write to {out} ({existing} is not a writable folder)")
    from nosync.run import build, loggers

    if cfg.resume:  # a checkpoint's optimizer state fits only the same optimizer and loss
        saved = (checkpoint.latest(out) or {}).get("config", {})
        for key, default in (("optimizer", "sgd"), ("loss", "cross_entropy")):
            if saved.get(key, default) != getattr(cfg, key):
                raise UserError(
                    f"resume: the checkpoint is of a different run: {key}="
                    f"{saved.get(key, default)!r} (now {getattr(cfg, key)!r})"
                )
    loggers.check(cfg)
    devices.check(cfg.device)
    task = build.check(cfg)  # loads the data, imports and calls user pieces, fits two samples
    check_data_fits(cfg, task.n)
    if check_port and cfg.port:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", cfg.port))
            except OSError:
                raise UserError(f"port: {cfg.port} is already in use") from None


def _quiet_agent_logs() -> None:
    """The workers say what went wrong in one line each; the agent's own logs would repeat it.

    torch's elastic loggers each carry their own level, set when their module is imported.
    """
    os.environ.setdefault("LOGLEVEL", "CRITICAL")
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed", "torch.multiprocessing")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # a killed worker leaves a semaphore behind; the resource tracker (a child process that
    # takes its -W options from ours) would warn about it at exit
    sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")


def launch(cfg: TrainConfig) -> dict[str, Any] | None:
    """Run ``cfg`` on ``cfg.workers`` local ranks; returns rank 0's summary."""
    if under_launcher():
        interrupts.stop_deferring()
        return worker(cfg.to_dict(), external=True)
    runlock.check_free(cfg.out)
    preflight(cfg)
    interrupts.stop_deferring()  # a Ctrl+C during the checks stops here, before anything is written
    lock = runlock.acquire(cfg.out)
    try:
        if not cfg.resume:
            _check_out(cfg)  # again, under the lock: another run may have started meanwhile
        return _launch_local(cfg)
    finally:
        lock.release()


def _launch_local(cfg: TrainConfig) -> dict[str, Any] | None:
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not cfg.verbose:
        _quiet_agent_logs()
    os.environ[lifeline.LAUNCHER_ENV] = str(os.getpid())  # inherited by the fork server
    # workers fork from a server that has imported torch and nosync once: starting a rank takes
    # a fraction of a second instead of seconds of imports per rank (the server runs no torch op,
    # so no thread pool is forked)
    multiprocessing.set_forkserver_preload(PRELOAD)
    user_env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", *loopback.ENV)}
    os.environ["OMP_NUM_THREADS"] = str(thread_budget(cfg.threads, cfg.workers))  # ranks' pools
    server = loopback.rendezvous_server(cfg.port)  # held until the launch ends
    os.environ.update(loopback.ENV)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=cfg.workers,
        run_id=f"nosync-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"{loopback.HOST}:{server.port}",
        max_restarts=cfg.max_restarts,
        monitor_interval=0.1,
        start_method="forkserver",
        shutdown_timeout=30,
        local_addr=loopback.HOST,
        signals_to_handle=interrupts.LauncherStop.SIGNALS,
    )

    def sigint() -> None:
        raise SignalException("Ctrl+C", sigval=signal.SIGINT)

    try:
        with interrupts.LauncherStop(sigint):
            results = elastic_launch(config, worker)(cfg.to_dict())
    except SignalException as err:
        raise LaunchInterrupted(f"stopped by signal {err.sigval.name}") from None
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if failure.exitcode == INTERRUPTED:
            raise LaunchInterrupted("stopped by Ctrl+C") from None
        raise LaunchFailed(
            f"training failed: rank {rank} exited with status {failure.exitcode}"
            + (f" after {cfg.max_restarts} restart(s)" if cfg.max_restarts else "")
        ) from None
    finally:  # the next run in this process (compare's cells) sees the user's own setting
        server.close()
        for key, value in user_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return results[0]
