"""Issue-19 grid: does one exploring swarm run replace an lr sweep?  ``nosync simulate`` cells.

    python benchmarks/explore_grid.py --particles 4 --seeds 0,1,2 --jobs 2 \
        --configs astar,explore-weighted,explore-none,pbt,sweep

Configurations (Fashion-MNIST, mlp, 3 epochs, period 10; every cell one ``nosync simulate``):

- ``astar``: averaging (``elastic``, pressure 1: torch's periodic averaging, ``localsgd``) at
  each lr of the 5-point grid log-spaced over 0.005..0.5; A* is the best grid point per seed
  set, and its compute is the whole grid's;
- ``explore-RULE``: one run with ``--explore lr=0.005..0.5:log`` and the rule's pull
  (``weighted``: T 0.1, pressure 1; ``leader``: the defaults); ``none`` is PBT with this
  project's explore factors (0.8/1.25).  (``elastic`` ran once, diverged whole, and is now
  refused with --explore: RESULTS §17);
- ``pbt``: Ray Tune's semantics (quantile 0.25, factors 1.2/0.8, resample 0.25, no pull);
- ``sweep``: the same spread of starting values, no exploit and no pull (a sweep in one run);
- ``explore-leader-k50``/``explore-weighted-k50``: exploit every 50 rounds instead of 10;
  ``explore-weighted-p03``: ``weighted`` at the default pressure 0.3 (at pressure 1 every
  particle is the same model when it is judged); ``explore-leader-trainloss``: judged by the
  training loss instead of held-out fitness;
- ``off-low``/``off-high``: ``explore-leader-trainloss`` (the defaults) with the range
  off-centre (0.0005..0.05 and 0.05..5);
- ``overfit-*`` (target 4): the 5,000-example subset for 60 epochs at A*'s lr 0.05, averaging
  against exploring ``weight_decay`` and ``label_smoothing`` (held-out or training-loss
  fitness); the table adds the selected model's train-test gap.

Finished cells are skipped when the script runs again.  Writes
``benchmarks/results/explore/grid.json`` and prints a table of test accuracy (mean over seeds)
with the samples each row trained on, over every run it needs.
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nosync_run

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "explore"
GRID = (0.005, 0.0158, 0.05, 0.158, 0.5)
RANGE = "lr=0.005..0.5:log"
BASE = ["--dataset", "fashion-mnist", "--model", "mlp", "--epochs", "3", "--period", "10"]
BASE += ["--threads", "1", "--eval-every", "0"]
# every exploring cell names its fitness: --explore judged held-out before it followed the run's
# --fitness (train-loss by default), and a cell's flags must say which it ran with
HELD_OUT, TRAIN_LOSS = ["--fitness", "held-out"], ["--fitness", "train-loss"]
OVERFIT = ["--train-subset", "5000", "--epochs", "60", "--lr", "0.05"]
REGULARISE = "weight_decay=0.00001..0.01:log,label_smoothing=0..0.2"
CONFIGS: dict[str, list[list[str]]] = {
    "astar": [["--rule", "elastic", "--pressure", "1", "--lr", str(lr)] for lr in GRID],
    "explore-weighted": [["--explore", RANGE, "--rule", "weighted", "--temperature", "0.1",
                          "--pressure", "1", *HELD_OUT]],
    "explore-leader": [["--explore", RANGE, "--rule", "leader", *HELD_OUT]],
    "explore-none": [["--explore", RANGE, "--rule", "none", *HELD_OUT]],
    "pbt": [["--explore", RANGE, "--rule", "none", "--explore-factors", "0.8,1.2", *TRAIN_LOSS]],
    "sweep": [["--explore", RANGE, "--rule", "none", "--exploit-every", "0", *TRAIN_LOSS]],
    "explore-leader-k50": [["--explore", RANGE, "--rule", "leader", "--exploit-every", "50",
                            *HELD_OUT]],
    "explore-weighted-k50": [["--explore", RANGE, "--rule", "weighted", "--temperature", "0.1",
                              "--pressure", "1", "--exploit-every", "50", *HELD_OUT]],
    "explore-weighted-p03": [["--explore", RANGE, "--rule", "weighted", "--temperature", "0.1",
                              *HELD_OUT]],
    "explore-leader-trainloss": [["--explore", RANGE, "--rule", "leader", "--fitness",
                                  "train-loss"]],
    "off-low": [["--explore", "lr=0.0005..0.05:log", "--rule", "leader", *TRAIN_LOSS]],
    "off-high": [["--explore", "lr=0.05..5:log", "--rule", "leader", *TRAIN_LOSS]],
    # averaging at the sweep's 4 starting rates (the strata midpoints for N = 4), to set each
    # rate's single-particle accuracy (the sweep's own particles) beside its averaged one
    "avg-mid": [["--rule", "elastic", "--pressure", "1", "--lr", str(lr)]
                for lr in (0.0089, 0.0281, 0.0889, 0.2812)],
    # averaging at the mlp's A* lr alone: a lower bound of A* where the whole grid is too dear
    # (the cnn on this 2-core machine)
    "avg-0.05": [["--rule", "elastic", "--pressure", "1", "--lr", "0.05"]],
    "explore-leader-trainloss-k50": [["--explore", RANGE, "--rule", "leader", "--fitness",
                                      "train-loss", "--exploit-every", "50"]],
    # target 4: the 5,000-example subset for 60 epochs (RESULTS §4's overfitting setting), at
    # A*'s lr 0.05; averaging against exploring weight decay and label smoothing
    "overfit-avg": [[*OVERFIT, "--rule", "elastic", "--pressure", "1"]],
    "overfit-explore": [[*OVERFIT, "--explore", REGULARISE, "--rule", "leader", "--fitness",
                         "held-out"]],
    "overfit-explore-trainloss": [[*OVERFIT, "--explore", REGULARISE, "--rule", "leader",
                                   "--fitness", "train-loss"]],
}  # fmt: skip


def cell_dir(config: str, index: int, particles: int, seed: int, extra: list[str]) -> Path:
    tag = "-".join(extra).replace("=", "").replace("/", "") if extra else "default"
    return OUT / "cells" / f"{config}-{index}-P{particles}-s{seed}-{tag}"


def run_cell(config: str, index: int, particles: int, seed: int, extra: list[str]) -> dict:
    flags = [*BASE, *CONFIGS[config][index], "--particles", str(particles), "--seed", str(seed)]
    run = nosync_run.run("simulate", [*flags, *extra], cell_dir(config, index, particles, seed,
                                                                extra))  # fmt: skip
    s = run.summary
    explored = s.get("explore") if isinstance(s.get("explore"), dict) else {}
    return {
        "config": config,
        "index": index,
        "particles": particles,
        "seed": seed,
        "extra": extra,
        "flags": CONFIGS[config][index],
        "test_accuracy": s.get("test_accuracy"),
        "train_accuracy": train_accuracy(run.of_type("eval")),
        "worker_test_accuracy": s.get("worker_test_accuracy"),
        "start": explored.get("start"),
        "diverged": s.get("diverged"),
        "steps": s.get("steps"),
        "samples": (s.get("steps") or 0) * particles * 32,  # every particle's, batch 32
        "schedule": explored.get("schedule"),
    }


def train_accuracy(evals: list[dict]) -> float | None:
    """The selected model's training accuracy (on the run's fixed 2,000 training examples) at
    the last evaluation, which is the end of training: the train-test gap of target 4."""
    return evals[-1].get("selected_train_accuracy") if evals else None


def row(name: str, p: int, group: list[dict], samples: float) -> str:
    """One line of the table: mean test accuracy over the seeds (a diverged cell counts 0), the
    train-test gap where every seed has one, and ``samples`` per seed in millions."""
    seeds = sorted({c["seed"] for c in group})
    accs = [100 * (c["test_accuracy"] or 0) for c in group]
    gaps = [
        100 * (c["train_accuracy"] - c["test_accuracy"])
        for c in group
        if c.get("train_accuracy") is not None and c["test_accuracy"] is not None
    ]
    gap = f" (train-test gap {statistics.mean(gaps):.2f})" if len(gaps) == len(group) else ""
    return f"| {name}{gap} | {p} | {statistics.mean(accs):.2f} | {seeds} | {samples:.1f} |"


def alone(name: str, p: int, group: list[dict]) -> list[str]:
    """A sweep's particles one by one: each starting rate's own test accuracy (a sweep never
    copies, so a particle trains alone at its rate), where every seed recorded them."""
    if any(c.get("start") is None or c.get("worker_test_accuracy") is None for c in group):
        return []
    by_rate: dict[float, list[float]] = {}
    for c in group:
        for values, acc in zip(c["start"], c["worker_test_accuracy"], strict=True):
            by_rate.setdefault(round(values["lr"], 4), []).append(100 * acc)
    return [
        f"| {name}: its particle at lr {lr} alone | 1 | {statistics.mean(accs):.2f} | "
        f"{sorted({c['seed'] for c in group})} | |"
        for lr, accs in sorted(by_rate.items())
    ]


def table(cells: list[dict]) -> str:
    rows = ["| configuration | P | test acc % (mean over seeds) | seeds | samples per seed (M) |"]
    rows.append("|---|---|---|---|---|")
    by: dict[tuple[str, int, str], list[dict]] = {}  # the cnn's cells are the same configs
    for c in cells:
        by.setdefault((c["config"], c["particles"], " ".join(c["extra"])), []).append(c)
    for (config, p, extra), group in sorted(by.items()):
        name = f"{config} {extra}".strip()
        seeds = len({c["seed"] for c in group})
        per_value = {i: [c for c in group if c["index"] == i] for i in {c["index"] for c in group}}
        if len(per_value) == 1:
            rows.append(row(name, p, group, sum(c["samples"] for c in group) / seeds / 1e6))
            if config == "sweep":
                rows.extend(alone(name, p, group))
            continue
        for i, cs in sorted(per_value.items()):  # a grid: a row per value ...
            lr = CONFIGS[config][i][CONFIGS[config][i].index("--lr") + 1]
            rows.append(row(f"{name} lr {lr}", p, cs, sum(c["samples"] for c in cs) / seeds / 1e6))
        if config == "astar":  # ... and A*, the best on the mean over the seeds, at its cost
            means = {i: statistics.mean(100 * (c["test_accuracy"] or 0) for c in cs)
                     for i, cs in per_value.items()}  # fmt: skip
            best = max(means, key=means.__getitem__)
            grid = sum(c["samples"] for c in group) / seeds / 1e6  # the whole grid's
            rows.append(row(f"**A*** (lr {GRID[best]}) {extra}".strip(), p, per_value[best], grid))
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--particles", default="4")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--extra", default="", help="more flags for every cell, space-separated")
    ap.add_argument("--table", action="store_true", help="only print the table of grid.json")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads((OUT / "grid.json").read_text())))
        return
    extra = args.extra.split()
    todo = [
        (config, i, int(p), int(s), extra)
        for p in args.particles.split(",")
        for s in args.seeds.split(",")
        for config in args.configs.split(",")
        for i in range(len(CONFIGS[config]))
    ]
    with ThreadPoolExecutor(args.jobs) as pool:
        cells = list(pool.map(lambda t: run_cell(*t), todo))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "grid.json"
    old = json.loads(path.read_text()) if path.exists() else []
    done = {(t[0], t[1], t[2], t[3], " ".join(t[4])) for t in todo}
    keep = [
        c for c in old
        if (c["config"], c["index"], c["particles"], c["seed"], " ".join(c["extra"])) not in done
    ]  # fmt: skip
    path.write_text(json.dumps(keep + cells, indent=1))
    print(table(keep + cells))


if __name__ == "__main__":
    main()
