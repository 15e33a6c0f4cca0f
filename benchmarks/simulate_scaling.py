"""Issue-5 study: statistical efficiency of swarms of many, with ``nosync simulate``.

    python benchmarks/simulate_scaling.py --particles 1,2,4,8,16,32,64 --topologies all,ring \
        --seeds 3 --target 0.95

For every swarm size P, topology and seed: ``nosync simulate --particles P --topology T`` on
digits (mlp), evaluating often; the steps per particle until the selected model first reaches
``--target`` test accuracy give S(P) = steps of one particle / steps per particle of P.
Finished cells are skipped when the script runs again.  Writes
``benchmarks/results/simulate/scaling.json``, ``scaling.md`` and ``scaling.png``.

This measures steps, not seconds: a simulated round costs no communication and no waiting, so
S(P) is what a cluster could reach at best if rounds were free.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import nosync_run

HERE = Path(__file__).resolve().parent


def run(out: Path, flags: list[str]) -> list[dict]:
    return nosync_run.run("simulate", flags, out).of_type("eval")


def steps_to(curve: list[dict], target: float) -> int | None:
    return next((p["step"] for p in curve if p["selected_test_accuracy"] >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--particles", default="1,2,4,8,16,32,64")
    parser.add_argument("--topologies", default="all,ring")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--out", default=str(HERE / "results" / "simulate"))
    args = parser.parse_args()
    out = Path(args.out)
    sizes = [int(p) for p in args.particles.split(",")]
    topologies = args.topologies.split(",")
    steps: dict[str, dict[int, list[int | None]]] = {t: {} for t in topologies}
    finals: dict[str, dict[int, list[float]]] = {t: {} for t in topologies}
    for topology in topologies:
        for p in sizes:
            for seed in range(args.seeds):
                name = f"{topology}-p{p}-s{seed}"
                curve = run(
                    out / "cells" / name,
                    [
                        "--particles",
                        str(p),
                        "--topology",
                        topology,
                        "--seed",
                        str(seed),
                        "--dataset",
                        args.dataset,
                        "--epochs",
                        str(args.epochs),
                        "--eval-every",
                        str(args.eval_every),
                    ],
                )
                steps[topology].setdefault(p, []).append(steps_to(curve, args.target))
                finals[topology].setdefault(p, []).append(curve[-1]["selected_test_accuracy"])
                print(
                    f"{name}: steps to target {steps[topology][p][-1]}", file=sys.stderr, flush=True
                )
    base = [s for s in steps[topologies[0]].get(1, []) if s is not None]
    table = {}
    for topology in topologies:
        for p in sizes:
            reached = [s for s in steps[topology][p] if s is not None]
            table[f"{topology}-{p}"] = {
                "topology": topology,
                "particles": p,
                "reached": len(reached),
                "runs": len(steps[topology][p]),
                "steps": statistics.mean(reached) if reached else None,
                "speedup": statistics.mean(base) / statistics.mean(reached)
                if reached and base
                else None,
                "final_accuracy": statistics.mean(finals[topology][p]),
            }
    result = {
        "command": " ".join(["python", "benchmarks/simulate_scaling.py", *sys.argv[1:]]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "steps": {t: {str(p): v for p, v in d.items()} for t, d in steps.items()},
        "table": table,
    }
    (out / "scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"| topology | P | steps per particle to {100 * args.target:.0f} % | S(P) | "
        "final accuracy % |",
        "|---|---|---|---|---|",
    ]
    for row in table.values():
        s = "-" if row["steps"] is None else f"{row['steps']:.0f} ({row['reached']}/{row['runs']})"
        sp = "-" if row["speedup"] is None else f"{row['speedup']:.2f}"
        lines.append(
            f"| {row['topology']} | {row['particles']} | {s} | {sp} | "
            f"{100 * row['final_accuracy']:.2f} |"
        )
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(out, table, topologies, sizes, args.target)


def plot(out: Path, table: dict, topologies: list[str], sizes: list[int], target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(sizes, sizes, ":", color="grey", label="linear")
    for topology in topologies:
        pts = [(p, table[f"{topology}-{p}"]["speedup"]) for p in sizes]
        pts = [(p, s) for p, s in pts if s is not None]
        ax.plot([p for p, _ in pts], [s for _, s in pts], marker="o", label=topology)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="particles P",
        ylabel="S(P), steps per particle",
        title=f"simulated swarms, target {target:.0%}",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)


if __name__ == "__main__":
    main()
