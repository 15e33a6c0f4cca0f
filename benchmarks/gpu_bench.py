"""The GPU benchmark of ``benchmarks/gpu_check.sh``: three measurements on one device.

    python benchmarks/gpu_bench.py --out benchmarks/results/gpu [--device cuda] [--quick]

1. ``nosync train --strategy single`` against a plain PyTorch loop on the same device, model
   (``cnn``), batch (256) and data (Fashion-MNIST, on the device): throughput ratio (target
   >= 0.95).
2. fp32 against ``--precision bf16`` for ``cnn`` and a ResNet-18-sized CNN (:func:`resnet18`,
   11 M parameters, used as ``--model benchmarks/gpu_bench.py:resnet18``) on 32x32 inputs made
   from Fashion-MNIST (padded 28 -> 32), batch 256 (target: bf16 >= 1.5x fp32 on ResNet-18).
3. ``nosync train --workers 2`` on the device (one GPU: the ranks share it over gloo): it runs,
   every rank ends holding the selected model (the ranks' models in the last checkpoint, taken
   after a round at pressure 1, equal ``final.pt``), and its throughput.

Writes ``gpu_bench.json`` and ``gpu_bench.md`` to ``--out``.  ``--quick`` (the CPU dry path of
``gpu_check.sh``) runs the same steps with a few steps and small data.  Fashion-MNIST is found
as ``nosync`` finds it (``$NOSYNC_DATA``, then ``/usr/share/datasets``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


# ---- the bigger model ----------------------------------------------------------------------------
class Block(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = nn.Sequential()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def resnet18(input_shape: tuple[int, ...], classes: int) -> nn.Module:
    """ResNet-18 for 32x32 inputs (the CIFAR variant: a 3x3 stem, no max-pool)."""
    layers: list[nn.Module] = [
        nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
    ]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


# ---- the runs ------------------------------------------------------------------------------------
def nosync_train(out: Path, *flags: str) -> dict[str, Any]:
    """One ``nosync train`` run (its own processes); returns its summary.json and stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "nosync", "train", "--quiet", "--out", str(out), *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise SystemExit(f"nosync train {' '.join(flags)} failed:\n{result.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    summary["stderr"] = result.stderr.strip()
    return summary


def plain_loop(model_name: str, steps: int, batch: int, device: torch.device) -> float:
    """Samples per second of a hand-written loop: nosync's model, SGD with momentum and cosine
    decay, Fashion-MNIST on the device, a shuffled order drawn on the device."""
    from nosync.data.datasets import load_dataset
    from nosync.run.models import build_model

    data = load_dataset("fashion-mnist")
    x, y = data.x_train.to(device), data.y_train.to(device)
    model = build_model(model_name, data.input_shape, data.classes, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    per_epoch = len(y) // batch
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(len(y), device=device)
        idx = order[(step % per_epoch) * batch :][:batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        scheduler.step()
    sync()
    return steps * batch / (time.perf_counter() - start)


def padded_npz(path: Path, quick: bool) -> Path:
    """Fashion-MNIST padded to 32x32 (2 pixels of background on every side), as an .npz."""
    from nosync.data.datasets import find_idx_dir, read_idx

    folder = find_idx_dir("fashion-mnist", None)
    arrays = {}
    for key, stem in (
        ("x_train", "train-images-idx3-ubyte"),
        ("y_train", "train-labels-idx1-ubyte"),
        ("x_test", "t10k-images-idx3-ubyte"),
        ("y_test", "t10k-labels-idx1-ubyte"),
    ):
        file = folder / f"{stem}.gz" if (folder / f"{stem}.gz").exists() else folder / stem
        arrays[key] = read_idx(file)
    if quick:
        arrays = {k: v[:1200] if "train" in k else v[:300] for k, v in arrays.items()}
    for key in ("x_train", "x_test"):
        arrays[key] = np.pad(arrays[key], ((0, 0), (2, 2), (2, 2)))
    np.savez(path, **arrays)
    return path


def consistent(run: Path) -> bool:
    """Every rank's model in the last checkpoint set equals ``final.pt``'s."""
    final = torch.load(run / "final.pt", weights_only=True)["state_dict"]
    last = sorted((run / "checkpoints").glob("step-*"))[-1]
    ranks = [torch.load(f, weights_only=True)["model"] for f in sorted(last.glob("rank-*.pt"))]
    return len(ranks) > 1 and all(
        all(torch.equal(r[k].cpu(), final[k].cpu()) for k in final) for r in ranks
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="a few steps (the CPU dry path)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="gpu_bench-"))  # run folders and data: not results
    try:
        res = measure(args, runs)
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    (out / "gpu_bench.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "gpu_bench.md").write_text(markdown(res))
    print(markdown(res))


def measure(args: argparse.Namespace, runs: Path) -> dict[str, Any]:
    device = torch.device(args.device)
    steps, batch = (4, 32) if args.quick else (200, 256)
    base = ["--device", args.device, "--steps", str(steps), "--batch-size", str(batch)]
    res: dict[str, Any] = {"device": args.device, "quick": args.quick, "steps": steps}
    if device.type == "cuda":
        res["device_name"] = torch.cuda.get_device_name(0)
        res["gpus"] = torch.cuda.device_count()
    res["torch"] = torch.__version__
    stamp = time.strftime("%Y%m%d-%H%M%S")

    # 1. single against a plain loop (fashion-mnist 28x28, cnn)
    plain = plain_loop("cnn", steps, batch, device)
    single = nosync_train(
        runs / f"{stamp}-single", *base, "--strategy", "single", "--model", "cnn",
        "--dataset", "fashion-mnist",
    )  # fmt: skip
    res["single_vs_plain"] = {
        "plain_samples_per_second": plain,
        "single_samples_per_second": single["train_samples_per_second"],
        "ratio": single["train_samples_per_second"] / plain,
        "target": 0.95,
    }

    # 2. fp32 against bf16 on 32x32 inputs
    npz = padded_npz(runs / f"{stamp}-fmnist32.npz", args.quick)
    res["precision"] = {}
    for name, model in (("cnn", "cnn"), ("resnet18", f"{Path(__file__).resolve()}:resnet18")):
        rates = {}
        for precision in ("fp32", "bf16"):
            s = nosync_train(
                runs / f"{stamp}-{name}-{precision}", *base, "--strategy", "single",
                "--model", model, "--dataset", f"npz:{npz}", "--precision", precision,
            )  # fmt: skip
            rates[precision] = s["train_samples_per_second"]
            rates[f"{precision}_peak_memory_bytes"] = s.get("peak_memory_bytes")
        rates["bf16_speedup"] = rates["bf16"] / rates["fp32"]
        res["precision"][name] = rates
    res["precision"]["target_resnet18_bf16_speedup"] = 1.5

    # 3. two workers on the device
    run = runs / f"{stamp}-workers2"
    s = nosync_train(
        run, *base, "--workers", "2", "--model", "cnn", "--dataset", "fashion-mnist",
        "--pressure", "1", "--period", str(max(1, steps // 4)),
    )  # fmt: skip
    res["workers2"] = {
        "samples_per_second": s["train_samples_per_second"],
        "backend": s.get("backend"),
        "consistent": consistent(run),
        "test_accuracy": s["test_accuracy"],
        "log": s["stderr"],
    }
    return res


def markdown(r: dict[str, Any]) -> str:
    sp, pr, w2 = r["single_vs_plain"], r["precision"], r["workers2"]
    lines = [
        f"# GPU check: {r.get('device_name', r['device'])} (torch {r['torch']}"
        f"{', quick dry path' if r['quick'] else ''})",
        "",
        "| measurement | value | target |",
        "|---|---|---|",
        f"| single / plain loop throughput (cnn, batch 256) | {sp['ratio']:.3f} "
        f"({sp['single_samples_per_second']:.0f} / {sp['plain_samples_per_second']:.0f} "
        "samples/s) | >= 0.95 |",
    ]
    for name in ("cnn", "resnet18"):
        p = pr[name]
        target = ">= 1.5" if name == "resnet18" else ""
        lines.append(
            f"| {name} 32x32 bf16 / fp32 throughput | {p['bf16_speedup']:.2f} "
            f"({p['bf16']:.0f} / {p['fp32']:.0f} samples/s) | {target} |"
        )
    lines += [
        f"| --workers 2: every rank holds the selected model | {w2['consistent']} "
        f"(backend {w2['backend']}) | True |",
        f"| --workers 2 throughput (all workers) | {w2['samples_per_second']:.0f} samples/s | |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
