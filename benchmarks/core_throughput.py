"""Issue-2 benchmark: the cost of nosync's machinery, measured side by side in one run.

    python benchmarks/core_throughput.py --repeats 3 --steps 3000

(a) ``nosync train --strategy single`` against the plain loop in ``plain_loop.py`` (same model,
    batch size and optimizer, one thread each): throughput ratio, target >= 0.97;
(b) 2 swarm workers against 1 worker, one thread each: aggregate throughput ratio, target >= 1.9;
(c) the share of training wall time spent in sync rounds at the default period, target < 2%.

For (b) the machine's own ceiling is measured too: two plain loops at once against one.
Runs are interleaved (plain, two plains, single, swarm, plain, ...) so that drifts in machine
speed hit all alike; the medians over the repeats are reported.  Results go to
``benchmarks/results/core_throughput.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return result.stdout


def nosync_train(out: Path, *flags: str) -> dict:
    run([sys.executable, "-m", "nosync", "train", *flags, "--quiet", "--out", str(out)])
    return json.loads((out / "summary.json").read_text())


def two_at_once(cmd: list[str]) -> float:
    """The machine's own ceiling for (b): two plain loops at once, aggregate samples/s."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    return sum(json.loads(p.communicate()[0])["samples_per_second"] for p in procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--period", type=int, default=None, help="default: nosync train's")
    parser.add_argument("--out", default=str(HERE / "results" / "core_throughput.json"))
    args = parser.parse_args()

    common = [
        "--dataset",
        args.dataset,
        "--model",
        args.model,
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        "1",
    ]
    period = ["--period", str(args.period)] if args.period else []
    rows: dict[str, list[float]] = {
        "plain": [],
        "plain2": [],
        "single": [],
        "swarm2": [],
        "sync_share": [],
    }
    plain_cmd = [
        sys.executable,
        str(HERE / "plain_loop.py"),
        "--dataset",
        args.dataset,
        "--model",
        args.model,
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        "1",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            plain = json.loads(run(plain_cmd))
            rows["plain2"].append(two_at_once(plain_cmd))
            single = nosync_train(Path(tmp) / f"single{r}", "--strategy", "single", *common)
            swarm = nosync_train(Path(tmp) / f"swarm{r}", "--workers", "2", *common, *period)
            rows["plain"].append(plain["samples_per_second"])
            rows["single"].append(single["train_samples_per_second"])
            rows["swarm2"].append(swarm["train_samples_per_second"])
            rows["sync_share"].append(swarm["sync_seconds"] / swarm["train_seconds"])
            print(
                f"repeat {r + 1}/{args.repeats}: plain {plain['samples_per_second']:.0f}, "
                f"single {single['train_samples_per_second']:.0f}, swarm x2 "
                f"{swarm['train_samples_per_second']:.0f} samples/s, sync share "
                f"{rows['sync_share'][-1]:.1%}",
                file=sys.stderr,
            )
        period_used = swarm["sync_rounds"] and args.steps // swarm["sync_rounds"]
    med = {k: statistics.median(v) for k, v in rows.items()}
    result = {
        "command": " ".join(["python", "benchmarks/core_throughput.py", *sys.argv[1:]]),
        "settings": vars(args) | {"period_used": period_used},
        "runs": rows,
        "median": med,
        "single_over_plain": med["single"] / med["plain"],
        "swarm2_over_single": med["swarm2"] / med["single"],
        "plain2_over_plain": med["plain2"] / med["plain"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("| measure | median | target |\n|---|---|---|")
    print(
        f"| (a) single / plain loop throughput | {result['single_over_plain']:.3f} "
        f"({med['single']:.0f} / {med['plain']:.0f} samples/s) | >= 0.97 |"
    )
    print(
        f"| (b) 2 workers / 1 worker throughput | {result['swarm2_over_single']:.2f} "
        f"({med['swarm2']:.0f} / {med['single']:.0f} samples/s) | >= 1.9 |"
    )
    print(
        f"| (c) sync rounds / training wall time (period {period_used}) | "
        f"{med['sync_share']:.1%} | < 2% |"
    )


if __name__ == "__main__":
    main()
