"""Wall time to the target, with and without a slow worker, side by side (issue 9's targets 2, 4).

For each seed the configurations run one after another (interleaved, so that the machine's
drift hits them alike): Fashion-MNIST, mlp, 3 epochs per worker, one thread per rank, period
25, 30 evaluations per run (evaluation time is not training time).

- *Unslowed*, N = 2 (the `walltime-n2` protocol of RESULTS §1): `single`, `localsgd`, the old
  swarm (blocking rounds, held-out fitness) and the async swarm (train-loss fitness), waiting
  for or skipping stragglers.
- *Slowed*: the last rank of N = 2 and of N = 4 runs 2x slower (``--inject slow@RANK:2``):
  `localsgd`, `ddp` and the async swarm with ``--stragglers skip`` (and ``wait``); the fast
  ranks' throughput (their trained steps per training second) against the same configuration
  unslowed, in the same seed's batch.

Reported: training seconds until the selected model first reaches 87.02 % (99 % of `single`'s
final accuracy in §1), final accuracy, the fast ranks' throughput kept, steps skipped.

    python benchmarks/stragglers.py --seeds 0 1 2

writes ``benchmarks/results/stragglers.json`` (one row per run) and its table,
``stragglers.md``; ``--table-only`` rebuilds the table from the JSON without running anything.

``--plan rules`` runs issue 9's target 2 with issue 10's rules instead: the `walltime-n2`
protocol (N = 2, unslowed) for `single`, `localsgd` at periods 25 and 10, and the async swarm
with the `leader` rule (the default) and with `weighted` (T 0.1, pressure 1, period 10), into
``benchmarks/results/walltime_rules.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import nosync_run

HERE = Path(__file__).resolve().parent
TARGET = 0.8702
SWARM = ["--strategy", "nosync", "--round", "async", "--fitness", "train-loss"]
CONFIGS = {
    "single": ["--strategy", "single"],
    "localsgd": ["--strategy", "localsgd"],
    "ddp": ["--strategy", "ddp"],
    "nosync-blocking": ["--strategy", "nosync", "--round", "blocking", "--fitness", "held-out"],
    "nosync-async": [*SWARM, "--stragglers", "wait"],
    "nosync-async-skip": [*SWARM, "--stragglers", "skip"],
    # issue 10's tuned baseline and best swarm rule (RESULTS §14); later flags win
    "localsgd-p10": ["--strategy", "localsgd", "--period", "10"],
    "nosync-weighted": [
        *SWARM, "--stragglers", "wait", "--rule", "weighted", "--temperature", "0.1",
        "--pressure", "1.0", "--period", "10",
    ],
}  # fmt: skip
# (config, workers, slowed): the order they run in for every seed
PLAN = [
    ("single", 1, False),
    ("localsgd", 2, False),
    ("nosync-blocking", 2, False),
    ("nosync-async", 2, False),
    ("nosync-async-skip", 2, False),
    ("localsgd", 2, True),
    ("ddp", 2, True),
    ("nosync-async", 2, True),
    ("nosync-async-skip", 2, True),
    ("nosync-async-skip", 4, False),
    ("localsgd", 4, True),
    ("ddp", 4, True),
    ("nosync-async-skip", 4, True),
]
RULES_PLAN = [
    ("single", 1, False),
    ("localsgd", 2, False),
    ("localsgd-p10", 2, False),
    ("nosync-async", 2, False),
    ("nosync-weighted", 2, False),
]
PLANS = {"stragglers": (PLAN, "stragglers"), "rules": (RULES_PLAN, "walltime_rules")}


def seconds_to_target(evals: list[dict]) -> float:
    for record in evals:
        if record["selected_test_accuracy"] >= TARGET:
            return record["train_seconds"]
    return math.inf


def fast_throughput(summary: dict) -> float:
    """Rank 0's trained samples per training second (rank 0 is never the slowed one)."""
    trained = summary["steps"] - summary["skipped_steps_per_rank"][0]
    return trained * summary["samples_per_worker"] / summary["steps"] / summary["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--plan", choices=sorted(PLANS), default="stragglers")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/<plan name>")
    parser.add_argument(
        "--table-only", action="store_true", help="rebuild the .md table from the saved JSON"
    )
    args = parser.parse_args()
    plan, name_of = PLANS[args.plan]
    raw = HERE / "results" / f"{name_of}.json"
    if args.table_only:
        write_table(json.loads(raw.read_text()), plan, raw.with_suffix(".md"))
        return
    out, rows = Path(args.out or HERE / "results" / name_of), []
    for seed in args.seeds:
        for name, workers, slowed in plan:
            # 30 evaluations per run: 59,488 training examples (512 held out for fitness)
            steps = round(args.epochs * 59488 / 32)
            flags = [
                "--workers", str(workers), "--dataset", "fashion-mnist", "--model", "mlp",
                "--epochs", str(args.epochs), "--period", "25", "--seed", str(seed),
                "--threads", "1", "--eval-every", str(max(1, steps // 30)), *CONFIGS[name],
            ]  # fmt: skip
            if slowed:
                flags += ["--inject", f"slow@{workers - 1}:2"]
            tag = f"{name}-n{workers}{'-slow' if slowed else ''}-s{seed}"
            run = nosync_run.run("train", flags, out / "cells" / tag)
            s = run.summary
            rows.append(
                {
                    "config": name,
                    "workers": workers,
                    "slowed": slowed,
                    "seed": seed,
                    "test_accuracy": s["test_accuracy"],
                    "seconds_to_target": seconds_to_target(run.of_type("eval")),
                    "train_seconds": s["train_seconds"],
                    "fast_rank_samples_per_second": fast_throughput(s),
                    "skipped_steps_per_rank": s.get("skipped_steps_per_rank"),
                    "blocked_share": s["blocked_share"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    raw.parent.mkdir(exist_ok=True)
    raw.write_text(json.dumps(rows, indent=1) + "\n")
    write_table(rows, plan, raw.with_suffix(".md"))


def write_table(rows: list[dict], plan: list[tuple[str, int, bool]], path: Path) -> None:
    text = table(rows, plan)
    path.write_text(text)
    print(text, end="")


def to_target(values: list[float]) -> str:
    """Seconds to the target over seeds; a seed that never reached it is counted, not averaged."""
    reached = [v for v in values if not math.isinf(v)]
    if not reached:
        return f"not reached (0 of {len(values)} seeds)"
    sd = statistics.stdev(reached) if len(reached) > 1 else 0.0
    text = f"{statistics.mean(reached):.1f} ± {sd:.1f}"
    if len(reached) < len(values):
        text += f" (reached in {len(reached)} of {len(values)} seeds; mean of those)"
    return text


def skipped_steps(runs: list[dict], slowed: bool) -> str:
    """Slowed: the slowed (last) rank's skipped steps. Unslowed: every rank's, pooled."""
    if not any(r["skipped_steps_per_rank"] for r in runs):
        return "-"
    if slowed:
        last = [r["skipped_steps_per_rank"][-1] for r in runs]
        sd = statistics.stdev(last) if len(last) > 1 else 0.0
        return f"{statistics.mean(last):.0f} ± {sd:.0f} (slowed rank)"
    every = [n for r in runs for n in r["skipped_steps_per_rank"]]
    if not any(every):
        return "0"
    return f"{statistics.mean(every):.0f} per rank ({min(every)}-{max(every)})"


def table(rows: list[dict], plan: list[tuple[str, int, bool]]) -> str:
    """The Markdown table: mean ± std over seeds per (config, workers, slowed)."""

    def cell(name: str, workers: int, slowed: bool) -> list[dict]:
        return [
            r for r in rows if (r["config"], r["workers"], r["slowed"]) == (name, workers, slowed)
        ]

    def ms(values: list[float], fmt: str = ".2f") -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):{fmt}} ± {sd:{fmt}}"

    lines = [
        "| config | N | slowed | seconds to 87.02 % | test acc % | fast rank kept % of "
        "unslowed | steps skipped | blocked share % |",
        "|---" * 8 + "|",
    ]
    for name, workers, slowed in plan:
        c = cell(name, workers, slowed)
        if not c:
            continue
        kept = "-"
        base = cell(name, workers, False)
        if slowed and base:
            by_seed = {r["seed"]: r["fast_rank_samples_per_second"] for r in base}
            kept = ms(
                [
                    100 * r["fast_rank_samples_per_second"] / by_seed[r["seed"]]
                    for r in c
                    if r["seed"] in by_seed
                ],
                ".1f",
            )
        lines.append(
            f"| {name} | {workers} | {'2x' if slowed else '-'} | "
            f"{to_target([r['seconds_to_target'] for r in c])} | "
            f"{ms([100 * r['test_accuracy'] for r in c])} | {kept} | "
            f"{skipped_steps(c, slowed)} | "
            f"{ms([100 * r['blocked_share'] for r in c], '.1f')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
