"""Blocking against async rounds, and held-out against train-loss fitness, side by side.

For each seed, the configurations run one after another (interleaved, so that the machine's
drift hits them alike) on Fashion-MNIST with the mlp, one thread per rank, period 25:

- time blocked by rounds as a share of training time (``blocked_share`` of rank 0), the
  train throughput and the final test accuracy of the selected model;
- how often the leader elected by held-out fitness is also the particle with the lowest mean
  training loss since the last round (both are logged in every round record).

    python benchmarks/async_rounds.py --workers 2 4 --seeds 0 1 2 --epochs 3 \
        --configs blocking async async-train-loss
    python benchmarks/async_rounds.py --workers 2 --seeds 0 1 2 --epochs 3 --configs \
        async-train-loss async-train-loss-d1 async-train-loss-d2 async-train-loss-d10 \
        async-train-loss-d25 --json delay_sweep.json   # the delay sweep
    python benchmarks/async_rounds.py --workers 2 --seeds 0 1 2 3 --epochs 1 --configs \
        async-train-loss async-train-loss-explore --json explore_blocking.json  # issue 19, 5

writes ``benchmarks/results/async_rounds.json`` (or ``--json``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import nosync_run

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "blocking": ["--round", "blocking", "--fitness", "held-out"],
    "async": ["--round", "async", "--fitness", "held-out"],
    "async-train-loss": ["--round", "async", "--fitness", "train-loss"],
    # the delay sweep (the default, period / 5 = 5, is the row above)
    **{
        f"async-train-loss-d{d}": ["--round", "async", "--fitness", "train-loss", "--delay", str(d)]
        for d in (1, 2, 10, 25)
    },
    # issue 19's target 5: the defaults with --explore (an exploit step every 10 rounds)
    "async-train-loss-explore": [
        "--round", "async", "--fitness", "train-loss", "--explore", "lr=0.005..0.5:log"
    ],
}  # fmt: skip


def agreement(rounds: list[dict]) -> float:
    """Share of rounds whose held-out leader also has the lowest training loss."""
    usable = [r for r in rounds if r["train_loss"] and None not in r["train_loss"]]
    same = [
        r["leader"] == min(range(len(r["train_loss"])), key=r["train_loss"].__getitem__)
        for r in usable
    ]
    return sum(same) / len(same) if same else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS)[:3])
    parser.add_argument("--out", default=str(HERE / "results" / "async_rounds"))
    parser.add_argument("--json", default="async_rounds.json", help="under benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for seed in args.seeds:
        for workers in args.workers:
            for name in args.configs:
                flags = [
                    "--workers", str(workers), "--dataset", "fashion-mnist", "--model", "mlp",
                    "--epochs", str(args.epochs), "--period", "25", "--seed", str(seed),
                    "--threads", "1", *CONFIGS[name],
                ]  # fmt: skip
                run = nosync_run.run("train", flags, out / "cells" / f"{name}-n{workers}-s{seed}")
                s = run.summary
                rows.append(
                    {
                        "config": name,
                        "workers": workers,
                        "seed": seed,
                        "test_accuracy": s["test_accuracy"],
                        "blocked_share": s["blocked_share"],
                        "samples_per_second": s["train_samples_per_second"],
                        "leader_agreement": agreement(run.of_type("round")),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / args.json).write_text(json.dumps(rows, indent=1) + "\n")
    print("\n| config | N | test acc % | blocked share % | samples/s | held-out leader = "
          "lowest train loss |\n|---|---|---|---|---|---|")  # fmt: skip
    for name in args.configs:
        for workers in args.workers:
            cell = [r for r in rows if r["config"] == name and r["workers"] == workers]

            def ms(key: str, scale: float = 1.0, cell: list = cell) -> str:
                values = [scale * r[key] for r in cell]
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                return f"{statistics.mean(values):.2f} ± {sd:.2f}"

            print(
                f"| {name} | {workers} | {ms('test_accuracy', 100)} | "
                f"{ms('blocked_share', 100)} | {ms('samples_per_second')} | "
                f"{ms('leader_agreement', 100)} % |"
            )


if __name__ == "__main__":
    main()
