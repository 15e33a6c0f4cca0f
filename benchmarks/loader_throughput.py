"""Issue-12 benchmark: single-worker training throughput before and after batches became a
stream (direct indexing for in-memory tensors, a DataLoader for map-style datasets).

    python benchmarks/loader_throughput.py --base-ref ab207a6 --repeats 3 --steps 3000

Runs ``nosync train --strategy single --threads 1 --steps N`` on an MNIST-format dataset
(Fashion-MNIST when ``--data-dir`` has it, else a synthetic 28x28 IDX set of the same shape),
alternating: the code at ``--base-ref`` (checked out with ``git archive`` into a temporary folder
and put first on ``PYTHONPATH``), this tree, and this tree with the same tensors behind a
map-style dataset (``--dataset MODULE:CALLABLE``, so every batch goes through the DataLoader).
Reports the median ``train_samples_per_second`` of each and the ratios to the base.
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


def train(env: dict[str, str], flags: list[str], out: Path) -> float:
    cmd = [sys.executable, "-m", "nosync", "train", *flags, "--quiet", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out.parent)
    if result.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return json.loads((out / "summary.json").read_text())["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-ref", default="main")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nosync-loader-"))
    folder = Path(args.data_dir)
    if not (folder / "train-images-idx3-ubyte.gz").exists():
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
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, (variant_env, variant_flags) in variants.items():
            out = tmp / f"{name}-{repeat}"
            speeds[name].append(train(variant_env, variant_flags, out))
            print(f"{name} #{repeat}: {speeds[name][-1]:.0f} samples/s", file=sys.stderr)
    medians = {name: statistics.median(v) for name, v in speeds.items()}
    print(f"| variant | samples/s (median of {args.repeats}) | runs | ratio to base |")
    print("|---|---|---|---|")
    for name, median in medians.items():
        runs = ", ".join(f"{v:.0f}" for v in speeds[name])
        print(f"| {name} | {median:.0f} | {runs} | {median / medians['base']:.3f} |")


if __name__ == "__main__":
    main()
