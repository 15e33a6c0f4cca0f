"""Elastic restarts across two torchrun "nodes" on loopback: kill -9 one worker, count outcomes.

Each try starts two ``torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d
--max-restarts 1 -m nosync train`` agents on one c10d rendezvous (127.0.0.1), waits for the
first checkpoint, kills node B's worker with SIGKILL, and waits for both agents:

* recovered: both exit 0 and the run's summary says it restarted once and finished every step;
* failed: an agent exits non-zero;
* hung: an agent is still running ``--hang-after`` seconds after the kill (both are then
  killed).

    python benchmarks/two_node_kill.py --tries 10

writes the counts and every try's outcome and seconds to ``--out``
(``benchmarks/results/two_node_kill.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nosync_run

HERE = Path(__file__).resolve().parent
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            out += [child, *descendants(child)]
    return out


def rank_of(pid: int) -> int | None:
    """The global rank of a worker process (from its environment), None for other processes."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if b"resource_tracker" in cmdline or b"forkserver" in cmdline:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def checkpoint_step(out: Path) -> int | None:
    try:
        return json.loads((out / "checkpoints" / "latest.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return None


def one_try(
    out: Path,
    steps: int = 400,
    timeout: float = 30,
    hang_after: float = 240,
    log: Path | None = None,
) -> str:
    """One start, kill, recover cycle; returns "recovered", "failed" or "hung"."""
    port = free_port()
    command = [
        TORCHRUN,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        f"two-node-{port}",
        "--max-restarts",
        "1",
        "--monitor-interval",
        "0.5",
        "-m",
        "nosync",
        "train",
        "--workers",
        "2",
        "--steps",
        str(steps),
        "--period",
        "10",
        "--checkpoint-every",
        "3",
        "--timeout",
        str(timeout),
        "--quiet",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOGLEVEL": "ERROR"}
    logs = [open(log.with_suffix(f".{n}.log") if log else os.devnull, "w") for n in "ab"]  # noqa: SIM115
    nodes = [
        subprocess.Popen(
            command, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        for f in logs
    ]
    try:
        deadline = time.monotonic() + hang_after
        while checkpoint_step(out) is None:
            if time.monotonic() > deadline or any(n.poll() is not None for n in nodes):
                return "failed"
            time.sleep(0.2)
        victims = [p for p in descendants(nodes[1].pid) if rank_of(p) is not None]
        if not victims:
            return "failed"
        os.kill(victims[0], signal.SIGKILL)
        deadline = time.monotonic() + hang_after
        while any(n.poll() is None for n in nodes):
            if time.monotonic() > deadline:
                return "hung"
            time.sleep(0.5)
        if any(n.returncode for n in nodes):
            return "failed"
        summary = nosync_run.read(out).summary
        ok = summary["restarts"] == 1 and summary["steps"] == steps
        return "recovered" if ok else "failed"
    finally:
        for n in nodes:
            if n.poll() is None:
                os.killpg(n.pid, signal.SIGKILL)
                n.wait()
        for f in logs:
            f.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--timeout", type=float, default=30, help="the runs' --timeout")
    parser.add_argument("--hang-after", type=float, default=240)
    parser.add_argument("--keep", help="keep run folders and agent logs under this folder")
    parser.add_argument("--out", default=str(HERE / "results" / "two_node_kill.json"))
    args = parser.parse_args()
    counts = {"recovered": 0, "failed": 0, "hung": 0}
    tries: list[dict] = []
    root = Path(args.keep or tempfile.mkdtemp(prefix="two-node-"))
    root.mkdir(parents=True, exist_ok=True)
    for i in range(args.tries):
        started = time.monotonic()
        out = root / f"try-{i:02d}"
        outcome = one_try(out, args.steps, args.timeout, args.hang_after, log=root / f"try-{i:02d}")
        counts[outcome] += 1
        tries.append({"outcome": outcome, "seconds": time.monotonic() - started})
        print(f"try {i}: {outcome} ({tries[-1]['seconds']:.0f} s)", flush=True)
    print(json.dumps(counts))
    settings = {k: v for k, v in vars(args).items() if k not in ("keep", "out")}
    raw = {
        "command": "python benchmarks/two_node_kill.py " + " ".join(sys.argv[1:]),
        "settings": settings,
        "load_average_after": os.getloadavg(),
        "counts": counts,
        "tries": tries,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(raw, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if counts["recovered"] == args.tries else 1


if __name__ == "__main__":
    sys.exit(main())
