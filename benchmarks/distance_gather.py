"""What the delayed distances saved: one all-gather of one float per particle, against a round.

Until issue 18 each particle's distance to its pull target rode with the *next* round's message,
so that the log's distances cost no collective of their own.  This measures what that saved:

1. the all-gather of one float64 per particle, through ``DistTransport`` on gloo, with 2 and 4
   local ranks (``--iterations`` timed after a warm-up; median and 90th percentile per call);
2. the round of a default ``nosync train`` run (the mlp, ``--threads 1``) with the same number of
   workers, blocking and async: the median of the rank-0 round records' ``seconds`` (wall time
   of a round), ``blocked_seconds`` (what the training thread paid) and ``comm_seconds``.

    PYTHONPATH=src python benchmarks/distance_gather.py --workers 2 4

writes ``benchmarks/results/distance_gather.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = Path(__file__).resolve().parent


def _gather_worker(rank: int, world: int, store: str, iterations: int, out: str) -> None:
    from nosync.core.transport import DistTransport

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    transport = DistTransport(None)
    one = torch.tensor([0.5 * rank], dtype=torch.float64)
    for _ in range(50):
        transport.all_gather(one)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        transport.all_gather(one)
        times.append(time.perf_counter() - start)
    dist.barrier()
    if rank == 0:
        Path(out).write_text(json.dumps(times))
    dist.destroy_process_group()


def gather_seconds(world: int, iterations: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        mp.spawn(
            _gather_worker,
            args=(world, os.path.join(tmp, "store"), iterations, out),
            nprocs=world,
        )
        return json.loads(Path(out).read_text())


def round_seconds(world: int, round_: str, steps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "nosync", "train", "--workers", str(world), "--threads", "1",
            "--steps", str(steps), "--round", round_, "--checkpoint-every", "0", "--quiet",
            "--out", tmp,
        ]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        lines = Path(tmp, "metrics.jsonl").read_text().splitlines()
        rounds = [r for r in map(json.loads, lines) if r.get("type") == "round"]
    return {
        key: statistics.median(r[key] for r in rounds)
        for key in ("seconds", "blocked_seconds", "comm_seconds")
    } | {"rounds": len(rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--json", default=str(HERE / "results" / "distance_gather.json"))
    args = parser.parse_args()
    results = []
    for world in args.workers:
        times = sorted(gather_seconds(world, args.iterations))
        row = {
            "workers": world,
            "gather_median_s": statistics.median(times),
            "gather_p90_s": times[int(0.9 * len(times))],
            "load_average": os.getloadavg()[0],
        }
        for round_ in ("blocking", "async"):
            row[round_] = round_seconds(world, round_, args.steps)
        results.append(row)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(
        "| workers | all-gather of 1 float: median (p90) | round | round seconds | blocked "
        "| comm | gather / round | gather / blocked |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in results:
        g = row["gather_median_s"]
        for round_ in ("blocking", "async"):
            r = row[round_]
            print(
                f"| {row['workers']} | {g * 1e6:.0f} us ({row['gather_p90_s'] * 1e6:.0f} us) "
                f"| {round_} | {r['seconds'] * 1e3:.1f} ms | {r['blocked_seconds'] * 1e3:.1f} ms "
                f"| {r['comm_seconds'] * 1e3:.1f} ms | {g / r['seconds']:.1%} "
                f"| {g / r['blocked_seconds']:.1%} |"
            )


if __name__ == "__main__":
    main()
