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

from nosync.data import load_dataset
from nosync.models import build_model


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
    x, y = data.x_train, data.y_train
    model = build_model(args.model, data.input_shape, data.classes, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    steps_per_epoch = len(y) // args.batch_size

    start = time.perf_counter()
    for step in range(args.steps):
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(y), generator=g)
        idx = order[(step % steps_per_epoch) * args.batch_size :][: args.batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"samples_per_second": args.steps * args.batch_size / seconds, "seconds": seconds}
        )
    )


if __name__ == "__main__":
    main()
