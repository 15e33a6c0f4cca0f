"""Issue 19's target 6: how much of an exploring swarm's gain its winner's schedule keeps when
one worker retrains on it (``--replay``, as Ray Tune's ``PopulationBasedTrainingReplay``).

    python benchmarks/explore_replay.py --seeds 0 1 2

For each seed: the exploring swarm of ``explore_grid.py``'s ``explore-leader-trainloss`` cell
(N = 4, run if missing), one worker replaying its winner's schedule, and one worker at the
default fixed rate 0.05, all on Fashion-MNIST with the mlp for 3 epochs.  The share kept is
``(replay - fixed) / (swarm - fixed)``.  Writes ``results/explore/replay.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics

import explore_grid
import nosync_run

SINGLE = ["--strategy", "single", "--dataset", "fashion-mnist", "--model", "mlp", "--epochs", "3"]
SINGLE += ["--threads", "1", "--eval-every", "0"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        swarm = explore_grid.run_cell("explore-leader-trainloss", 0, 4, seed, [])
        cell = explore_grid.cell_dir("explore-leader-trainloss", 0, 4, seed, [])
        out = explore_grid.OUT / "replay-cells"
        replay = nosync_run.run(
            "train", [*SINGLE, "--replay", str(cell), "--seed", str(seed)], out / f"replay-s{seed}"
        ).summary
        fixed = nosync_run.run(
            "train", [*SINGLE, "--lr", "0.05", "--seed", str(seed)], out / f"fixed-s{seed}"
        ).summary
        row = {
            "seed": seed,
            "swarm": swarm["test_accuracy"],
            "replay": replay["test_accuracy"],
            "fixed": fixed["test_accuracy"],
        }
        gain = row["swarm"] - row["fixed"]
        row["kept"] = (row["replay"] - row["fixed"]) / gain if gain > 0 else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    (explore_grid.OUT / "replay.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("| seed | exploring swarm (N = 4) % | one worker replaying % | one at 0.05 % | kept |")
    print("|---|---|---|---|---|")
    for r in rows:
        kept = "n/a" if r["kept"] is None else f"{100 * r['kept']:.0f} %"
        print(f"| {r['seed']} | {100 * r['swarm']:.2f} | {100 * r['replay']:.2f} | "
              f"{100 * r['fixed']:.2f} | {kept} |")  # fmt: skip
    means = {k: 100 * statistics.mean(r[k] for r in rows) for k in ("swarm", "replay", "fixed")}
    kept = (means["replay"] - means["fixed"]) / (means["swarm"] - means["fixed"])
    print(f"| mean | {means['swarm']:.2f} | {means['replay']:.2f} | {means['fixed']:.2f} | "
          f"{100 * kept:.0f} % |")  # fmt: skip


if __name__ == "__main__":
    main()
