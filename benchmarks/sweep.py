"""Issue-3 sweep: pressure x period for the ``leader`` rule, to choose ``nosync train``'s defaults.

    python benchmarks/sweep.py --workers 4 --seeds 2 --epochs 3 \
        --pressures 0.01,0.03,0.1,0.3,1 --periods 10,25,50,100,250,500

Every cell is ``nosync train --workers N --pressure P --period T --seed S`` on Fashion-MNIST with
the mlp (one thread per rank), plus ``--strategy single`` per seed as the reference, all with
the same steps per worker.  Finished cells are skipped when the script is run again.  Writes
``benchmarks/results/sweep/sweep.json``, ``sweep.md`` (mean over seeds per cell) and
``sweep.png`` (heatmaps of the selected model's test accuracy and of the share of training time
spent in sync rounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import nosync_run

HERE = Path(__file__).resolve().parent


def floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",")]


def run_cell(out: Path, flags: list[str]) -> dict:
    s = nosync_run.run("train", flags, out).summary
    return {
        "test_accuracy": s["test_accuracy"],
        "ensemble_test_accuracy": s["ensemble_test_accuracy"],
        "worker_mean_test_accuracy": statistics.mean(s["worker_test_accuracy"]),
        "sync_share": s["sync_seconds"] / s["train_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--pressures", type=floats, default=floats("0.01,0.03,0.1,0.3,1"))
    parser.add_argument("--periods", type=floats, default=floats("10,25,50,100,250,500"))
    parser.add_argument("--out", default=str(HERE / "results" / "sweep"))
    args = parser.parse_args()
    out = Path(args.out)
    common = [
        "--dataset",
        args.dataset,
        "--model",
        args.model,
        "--epochs",
        str(args.epochs),
        "--threads",
        "1",
    ]
    cells, singles = {}, []
    total = args.seeds * (1 + len(args.pressures) * len(args.periods))
    done = 0
    for seed in range(args.seeds):
        singles.append(
            run_cell(
                out / "cells" / f"single-s{seed}",
                ["--strategy", "single", "--seed", str(seed), *common],
            )
        )
        done += 1
        for p in args.pressures:
            for t in args.periods:
                name = f"p{p:g}-t{int(t)}"
                cells.setdefault(name, []).append(
                    run_cell(
                        out / "cells" / f"{name}-s{seed}",
                        [
                            "--workers",
                            str(args.workers),
                            "--pressure",
                            str(p),
                            "--period",
                            str(int(t)),
                            "--seed",
                            str(seed),
                            *common,
                        ],
                    )
                )
                done += 1
                print(
                    f"[{done}/{total}] {name} seed {seed}: {cells[name][-1]['test_accuracy']:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    mean = {
        name: {k: statistics.mean(r[k] for r in rs) for k in rs[0]} for name, rs in cells.items()
    }
    single = statistics.mean(r["test_accuracy"] for r in singles)
    result = {
        "command": " ".join(["python", "benchmarks/sweep.py", *sys.argv[1:]]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "single_test_accuracy": single,
        "singles": singles,
        "cells": cells,
        "mean": mean,
    }
    (out / "sweep.json").write_text(json.dumps(result, indent=1) + "\n")
    write_table(out, args, mean, single)
    write_heatmaps(out, args, mean, single)


def write_table(out: Path, args: argparse.Namespace, mean: dict, single: float) -> None:
    lines = [
        f"Selected model's test accuracy, % (mean of {args.seeds} seeds; {args.workers} workers, "
        f"{args.epochs:g} epochs per worker). `single` at the same samples per worker: "
        f"{100 * single:.2f} %.",
        "",
        "| pressure \\ period | " + " | ".join(f"{int(t)}" for t in args.periods) + " |",
        "|---|" + "---|" * len(args.periods),
    ]
    for p in args.pressures:
        row = [f"{100 * mean[f'p{p:g}-t{int(t)}']['test_accuracy']:.2f}" for t in args.periods]
        lines.append(f"| {p:g} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Share of training wall time in sync rounds, %:",
        "",
        "| pressure \\ period | " + " | ".join(f"{int(t)}" for t in args.periods) + " |",
        "|---|" + "---|" * len(args.periods),
    ]
    for p in args.pressures:
        row = [f"{100 * mean[f'p{p:g}-t{int(t)}']['sync_share']:.1f}" for t in args.periods]
        lines.append(f"| {p:g} | " + " | ".join(row) + " |")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")


def write_heatmaps(out: Path, args: argparse.Namespace, mean: dict, single: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title, scale in [
        (axes[0], "test_accuracy", f"test accuracy - single ({100 * single:.2f} %), points", 100),
        (axes[1], "sync_share", "share of training time in sync rounds, %", 100),
    ]:
        grid = [
            [
                scale * (mean[f"p{p:g}-t{int(t)}"][key] - (single if key == "test_accuracy" else 0))
                for t in args.periods
            ]
            for p in args.pressures
        ]
        image = ax.imshow(
            grid, cmap="RdYlGn" if key == "test_accuracy" else "viridis", aspect="auto"
        )
        ax.set_xticks(range(len(args.periods)), [f"{int(t)}" for t in args.periods])
        ax.set_yticks(range(len(args.pressures)), [f"{p:g}" for p in args.pressures])
        ax.set_xlabel("period (steps)")
        ax.set_ylabel("pressure")
        ax.set_title(title, fontsize=10)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(
                    j,
                    i,
                    f"{v:+.2f}" if key == "test_accuracy" else f"{v:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                )
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)


if __name__ == "__main__":
    main()
