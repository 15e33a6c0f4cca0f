"""Issue 17 item 13: one nosync worker against a plain PyTorch loop, in interleaved pairs.

    python benchmarks/single_vs_plain.py --pairs 6 --epochs 3

Each round runs, one after the other in a fresh process each,

- ``nosync train --strategy single --workers 1 --dataset D --model M --epochs E --threads 1``
  (the whole command line, defaults for everything else: checkpoints every 500 steps, one
  evaluation per epoch), once per ``--variant`` (a nosync source tree; default: the one on
  ``PYTHONPATH``), and
- ``benchmarks/plain_loop.py`` for the same number of steps: the same model, batch size,
  optimizer (SGD, momentum 0.9, lr 0.05, cosine decay), one thread, the data in memory,

in an order that rotates from round to round, so that a drift of the machine's speed hits every
side alike.  Every figure is *training* samples per second: training samples over training wall
time, evaluation excluded on both sides.  nosync's is ``train_samples_per_second`` from its
``summary.json`` (the loop from the first step to the last, its checkpoints and bookkeeping
included, the per-epoch and end-of-run evaluations excluded); the plain loop has no evaluation
and times its loop alone.  A pair is a variant's run and the plain loop of the same round; its
ratio is nosync / plain, and a variant's figure is the median of its ratios.

``--variant before=DIR --variant after=src`` compares two source trees against the same plain
loops (e.g. an older commit's ``src`` unpacked with ``git archive``).  Every pair, the load
average and the medians go to ``--out`` (JSON).

``--chunk-steps S`` measures finer, for a machine whose speed drifts within a run: in *this*
process (the nosync on ``PYTHONPATH``), ``--pairs`` pairs of a plain-loop chunk of S steps and
nosync's own loop for S steps (``nosync.run.train.train`` on a one-rank gloo group, what the worker
of ``nosync train --strategy single`` runs: checkpoints every 500 steps and at its end,
evaluations excluded), the order alternating from pair to pair.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _env(src: str) -> dict[str, str]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return result.stdout


def nosync_single(args: argparse.Namespace, src: str, out: Path) -> dict:
    cmd = [
        sys.executable, "-m", "nosync", "train", "--strategy", "single", "--workers", "1",
        "--dataset", args.dataset, "--model", args.model, "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--threads", "1",
        "--quiet", "--out", str(out),
    ]  # fmt: skip
    _run(cmd, _env(src))
    return json.loads((out / "summary.json").read_text())


def plain(args: argparse.Namespace, steps: int) -> float:
    cmd = [
        sys.executable, str(HERE / "plain_loop.py"), "--dataset", args.dataset,
        "--model", args.model, "--steps", str(steps), "--batch-size", str(args.batch_size),
        "--lr", str(args.lr), "--threads", "1",
    ]  # fmt: skip
    return json.loads(_run(cmd))["samples_per_second"]


def steps_of(args: argparse.Namespace) -> int:
    """The steps ``--epochs`` makes for nosync (its fitness set held out), as it counts them."""
    from nosync.data.datasets import Batches, fitness_split, load_dataset
    from nosync.run.config import resolve

    cfg = resolve({}, {"dataset": args.dataset, "batch_size": args.batch_size})
    train_idx, _ = fitness_split(load_dataset(args.dataset).n_train, cfg.fitness_size, cfg.seed)
    per_epoch = Batches(len(train_idx), args.batch_size, cfg.seed, 0, 1).steps_per_epoch
    return max(1, round(args.epochs * per_epoch))


def in_process(args: argparse.Namespace, name: str) -> list[dict]:
    """``--chunk-steps``: alternate plain-loop chunks and nosync's loop in this process."""
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(HERE))
    from plain_loop import plain_loop

    from nosync.core.placement import Placement
    from nosync.data.datasets import load_dataset
    from nosync.run.config import resolve
    from nosync.run.train import train

    torch.set_num_threads(1)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29541")
    dist.init_process_group("gloo", rank=0, world_size=1)
    place = Placement(0, 1, 1, dist.group.WORLD, None)
    data = load_dataset(args.dataset)
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            load, rates = os.getloadavg()[0], {}
            order = ["plain", "nosync"] if i % 2 == 0 else ["nosync", "plain"]
            for side in order:
                if side == "plain":
                    rates[side] = plain_loop(
                        data, args.model, args.chunk_steps, args.batch_size, args.lr, seed=i
                    )
                    continue
                flags = {
                    "strategy": "single", "dataset": args.dataset, "model": args.model,
                    "steps": args.chunk_steps, "batch_size": args.batch_size, "lr": args.lr,
                    "threads": 1, "quiet": True, "seed": i, "out": f"{tmp}/chunk{i}",
                }  # fmt: skip
                rates[side] = train(resolve({}, flags), place)["train_samples_per_second"]
            ratio = rates["nosync"] / rates["plain"]
            pairs.append(
                {
                    "round": i,
                    "order": order,
                    "plain_samples_per_second": rates["plain"],
                    "nosync_samples_per_second": rates["nosync"],
                    "ratio": ratio,
                    "load_before": load,
                    "load_after": os.getloadavg()[0],
                }
            )
            print(f"pair {i + 1}/{args.pairs}: {name} nosync / plain {ratio:.3f}, load {load:.1f}")
    dist.destroy_process_group()
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="rounds (a pair per variant each)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="a nosync source tree to measure (repeatable; default: current=, the PYTHONPATH's)",
    )
    parser.add_argument(
        "--chunk-steps", type=int, default=0, help="in-process chunks of this many steps"
    )
    parser.add_argument("--out", default=str(HERE / "results" / "single_vs_plain.json"))
    args = parser.parse_args()
    if args.chunk_steps:
        name = (args.variant or ["current="])[0].split("=", 1)[0]
        finish(args, {name: in_process(args, name)}, [], args.chunk_steps)
        return
    variants = {
        name: os.path.abspath(src) if src else ""
        for name, src in (v.split("=", 1) for v in args.variant or ["current="])
    }
    sides = ["plain", *variants]
    steps = steps_of(args)

    pairs: dict[str, list[dict]] = {name: [] for name in variants}
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            order = sides[i % len(sides) :] + sides[: i % len(sides)]  # rotates every round
            load = os.getloadavg()[0]
            rates, summaries = {}, {}
            for side in order:
                if side == "plain":
                    rates[side] = plain(args, steps)
                else:
                    summary = nosync_single(args, variants[side], Path(tmp) / f"{side}{i}")
                    assert summary["steps"] == steps, (summary["steps"], steps)
                    summaries[side], rates[side] = summary, summary["train_samples_per_second"]
            after = os.getloadavg()[0]
            rounds.append({"order": order, "load_before": load, "load_after": after})
            for name, summary in summaries.items():
                pairs[name].append(
                    {
                        "round": i,
                        "plain_samples_per_second": rates["plain"],
                        "nosync_samples_per_second": rates[name],
                        "ratio": rates[name] / rates["plain"],
                        "nosync_train_seconds": summary["train_seconds"],
                        "nosync_eval_seconds": summary["eval_seconds"],
                        "nosync_wall_seconds": summary["wall_seconds"],
                    }
                )
            shown = ", ".join(f"{name} {pairs[name][-1]['ratio']:.3f}" for name in variants)
            print(
                f"round {i + 1}/{args.pairs} ({' '.join(order)}): plain {rates['plain']:.0f} "
                f"samples/s; nosync / plain: {shown}; load {load:.1f}",
                file=sys.stderr,
            )
    finish(args, pairs, rounds, steps)


def finish(
    args: argparse.Namespace, pairs: dict[str, list[dict]], rounds: list, steps: int
) -> None:
    """The medians, the JSON file and a line per variant."""
    variants = list(pairs)
    result: dict = {
        "command": " ".join(["python", "benchmarks/single_vs_plain.py", *sys.argv[1:]]),
        "settings": vars(args) | {"steps": steps},
        "mode": "in-process chunks" if args.chunk_steps else "command lines",
        "definition": "training samples / training wall time, evaluation excluded on both sides",
        "rounds": rounds,
        "pairs": pairs,
        "median_ratio": {n: statistics.median(p["ratio"] for p in ps) for n, ps in pairs.items()},
        "range": {
            n: [min(p["ratio"] for p in ps), max(p["ratio"] for p in ps)] for n, ps in pairs.items()
        },
    }
    if len(variants) == 2:  # the two variants' own ratio, round by round (the same plain loop)
        a, b = variants
        per_round = [pb["ratio"] / pa["ratio"] for pa, pb in zip(pairs[a], pairs[b], strict=True)]
        result[f"median_{b}_over_{a}"] = statistics.median(per_round)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, ps in pairs.items():
        lo, hi = result["range"][name]
        print(
            f"{name}: nosync single / plain loop, median {result['median_ratio'][name]:.3f} of "
            f"{len(ps)} pairs (range {lo:.3f}-{hi:.3f})"
        )


if __name__ == "__main__":
    main()
