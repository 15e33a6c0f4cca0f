"""Issue-12 benchmark: single-worker training throughput before and after batches became a
stream (direct indexing for in-memory tensors, a DataLoader for map-style datasets).

    python benchmarks/loader_throughput.py --base-ref ab207a6 --repeats 5 --steps 3000

(1) End to end: ``nosync train --strategy single --threads 1 --steps N`` on an MNIST-format
    dataset (Fashion-MNIST when ``--data-dir`` has it, else a synthetic 28x28 IDX set of the same
    shape): the code at ``--base-ref`` (``git archive`` into a temporary folder, first on
    ``PYTHONPATH``) against this tree ("tensors"), and against this tree with the same tensors
    behind a map-style dataset ("dataloader": ``--dataset MODULE:CALLABLE``, every batch through
    the DataLoader).  This machine is shared and its speed drifts by tens of percent, so each
    comparison runs as a *pair started together* (two 1-thread runs on 2 cores see the same load)
    and the median of the per-pair ratios of ``train_samples_per_second`` is reported.
(2) In one process, the data part alone (no model): microseconds per batch of the old loop's
    indexing, the new stream over tensors, and the DataLoader over a map-style dataset; and, as
    the yardstick, a whole training step of the mlp (the stream over tensors, forward, backward,
    SGD with momentum: what ``benchmarks/plain_loop.py`` times).  The four alternate in chunks,
    so they see the same load, and the DataLoader's extra cost is given as a share of the step.
    ``--repeats 0`` measures (2) alone (a minute on a quiet core).

Prints Markdown tables and writes every measurement to ``--out``
(``benchmarks/results/loader_throughput.json``): the per-pair samples/s, the per-chunk
microseconds and the load average before and after.
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

import nosync_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

MAP_STYLE = '''
import torch
from nosync.data import load_dataset


class InMemory(torch.utils.data.Dataset):
    """The built-in tensors, item by item: what a user's own map-style dataset costs."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def data():
    d = load_dataset("mnist", "{folder}")
    return InMemory(d.x_train, d.y_train), (d.x_test, d.y_test)
'''


def start(env: dict[str, str], flags: list[str], out: Path) -> subprocess.Popen:
    cmd = nosync_run.command("train", flags, out)
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=out.parent
    )


def finish(proc: subprocess.Popen, out: Path) -> float:
    _, err = proc.communicate()
    if proc.returncode:
        sys.exit(f"failed: {proc.args}\n{err[-2000:]}")
    return nosync_run.read(out).summary["train_samples_per_second"]


def data_cost(folder: Path, steps: int, chunks: int) -> dict[str, dict[str, list[float]]]:
    """(2): microseconds per batch, per chunk, alternating the ways: wall time, and this thread's
    CPU time (one torch thread, DataLoader without workers: all work is on this thread), which
    leaves out the time other jobs on a loaded machine take the core away."""
    import time

    import torch
    import torch.nn.functional as F

    from nosync.data.datasets import Batches, load_dataset
    from nosync.run import build
    from nosync.run.config import TrainConfig
    from nosync.run.models import build_model

    torch.set_num_threads(1)
    d = load_dataset("mnist", str(folder))
    x, y = d.x_train, d.y_train
    batches = Batches(len(y), 32, 0, 0, 1)
    mapstyle = torch.utils.data.Subset(torch.utils.data.TensorDataset(x, y), range(len(y)))
    cfg = TrainConfig()

    def old() -> None:  # the loop before: a list of index batches per epoch, indexed by step
        order, epoch, spe = [], -1, batches.steps_per_epoch
        for step in range(steps):
            if step // spe != epoch:
                epoch = step // spe
                order = batches.epoch(epoch)
            idx = order[step % spe]
            x[idx], y[idx]

    def run(samples: object) -> None:
        task = build.Task(d, x, y, samples, None, None, x, y)  # type: ignore[arg-type]
        for _ in build.stream(cfg, task, batches, 0, steps):
            pass

    model = build_model("mlp", d.input_shape, d.classes, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def train() -> None:  # the yardstick: a whole step, data included
        task = build.Task(d, x, y, None, None, None, x, y)  # type: ignore[arg-type]
        for inputs, targets in build.stream(cfg, task, batches, 0, steps):
            loss = F.cross_entropy(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    ways = {
        "old indexing": old,
        "tensors": lambda: run(None),
        "dataloader": lambda: run(mapstyle),
        "mlp step": train,
    }
    times: dict[str, dict[str, list[float]]] = {"wall": {}, "cpu": {}}
    for _ in range(chunks):
        for name, fn in ways.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            fn()
            c1, t1 = time.thread_time(), time.perf_counter()
            times["wall"].setdefault(name, []).append((t1 - t0) / steps * 1e6)
            times["cpu"].setdefault(name, []).append((c1 - c0) / steps * 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-ref", default="main")
    parser.add_argument("--repeats", type=int, default=3, help="pairs per variant; 0: only (2)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/loader_throughput.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="nosync-loader-"))
    folder = Path(args.data_dir)
    synthetic = not (folder / "train-images-idx3-ubyte.gz").exists()
    if synthetic:
        from helpers import tiny_image_dataset

        folder = tiny_image_dataset(tmp / "data", n_train=12000, n_test=2000)
    base = tmp / "base"
    base.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", args.base_ref, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    (tmp / "mapstyle.py").write_text(MAP_STYLE.replace("{folder}", str(folder)))
    flags = ["--strategy", "single", "--threads", "1", "--steps", str(args.steps)]
    data = ["--dataset", "mnist", "--data-dir", str(folder)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    variants = {
        "base": ({**env, "PYTHONPATH": str(base / "src")}, [*flags, *data]),
        "tensors": (env, [*flags, *data]),
        "dataloader": (env, [*flags, "--dataset", "mapstyle.py:data"]),
    }
    ratios: dict[str, list[float]] = {"tensors": [], "dataloader": []}
    pairs: dict[str, list[dict[str, float]]] = {name: [] for name in ratios}
    for repeat in range(args.repeats):
        for name in ratios:
            outs = [tmp / f"base-{name}-{repeat}", tmp / f"{name}-{repeat}"]
            procs = [start(*variants["base"], outs[0]), start(*variants[name], outs[1])]
            base_speed, speed = (finish(p, o) for p, o in zip(procs, outs, strict=True))
            ratios[name].append(speed / base_speed)
            pairs[name].append({"base": base_speed, name: speed})
            print(
                f"#{repeat} base {base_speed:.0f} vs {name} {speed:.0f} samples/s", file=sys.stderr
            )
    if args.repeats:
        print(f"(1) {args.steps} steps, pairs started together, {args.repeats} pairs each\n")
        print("| variant | ratio to base (median) | per-pair ratios |")
        print("|---|---|---|")
        for name, values in ratios.items():
            listed = ", ".join(f"{v:.3f}" for v in values)
            print(f"| {name} | {statistics.median(values):.3f} | {listed} |")
    chunks = data_cost(folder, 3000, 5)
    cost = {
        clock: {name: statistics.median(v) for name, v in ways.items()}
        for clock, ways in chunks.items()
    }
    print("\n(2) microseconds per batch of 32 (median of 5 chunks)\n")
    print("| way | wall | this thread's CPU |\n|---|---|---|")
    for name in cost["wall"]:
        print(f"| {name} | {cost['wall'][name]:.1f} | {cost['cpu'][name]:.1f} |")
    extra = {clock: c["dataloader"] - c["tensors"] for clock, c in cost.items()}
    share = {clock: extra[clock] / c["mlp step"] for clock, c in cost.items()}
    for clock in cost:
        print(
            f"\n{clock}: the DataLoader's extra {extra[clock]:.0f} us per batch is "
            f"{100 * share[clock]:.0f} % of an mlp step"
        )
    result = {
        "command": "python benchmarks/loader_throughput.py " + " ".join(sys.argv[1:]),
        "settings": {
            "base_ref": args.base_ref,
            "repeats": args.repeats,
            "steps": args.steps,
            "data": "synthetic 28x28 IDX set (12000 train)" if synthetic else str(folder),
            "batch_size": 32,
        },
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "pairs_samples_per_second": pairs,
        "ratios": ratios,
        "median_ratio": {n: statistics.median(v) for n, v in ratios.items() if v},
        "us_per_batch_chunks": chunks,
        "us_per_batch_median": cost,
        "dataloader_extra_us_per_batch": extra,
        "dataloader_extra_share_of_mlp_step": share,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
