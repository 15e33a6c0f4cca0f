"""The reference: a plain hand-written PyTorch loop (no nosync in the timed part).

    python benchmarks/plain_loop.py --steps 3000 --batch-size 32 --threads 1

Same model (nosync's ``mlp``/``cnn`` definitions), batch size and optimizer (SGD with momentum)
as ``nosync train --strategy single``; prints one JSON line with samples per second.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from nosync.data.datasets import Dataset, load_dataset
from nosync.run.models import build_model


def plain_loop(
    data: Dataset, model_name: str, steps: int, batch_size: int, lr: float, seed: int = 0
) -> float:
    """Train for ``steps`` steps; returns samples per second of the loop alone."""
    x, y = data.x_train, data.y_train
    model = build_model(model_name, data.input_shape, data.classes, seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)  # as nosync's default
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(y) // batch_size
    start = time.perf_counter()
    for step in range(steps):
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(y), generator=g)
        idx = order[(step % steps_per_epoch) * batch_size :][:batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    rate = plain_loop(data, args.model, args.steps, args.batch_size, args.lr)
    print(json.dumps({"samples_per_second": rate}))


if __name__ == "__main__":
    main()
