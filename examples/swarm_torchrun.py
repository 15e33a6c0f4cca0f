"""Swarm training inside your own PyTorch script.

    torchrun --standalone --nproc_per_node=4 examples/swarm_torchrun.py --epochs 10

Every rank trains its own copy (a particle) of an ordinary model with BatchNorm, using Adam;
``Swarm`` hooks ``optimizer.step`` and every ``period`` steps pulls the particles toward the one
with the lowest loss on a held-out fitness set.  At the end every rank holds the best particle.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from nosync import Swarm, loss_fitness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--period", type=int, default=20)
    parser.add_argument("--pressure", type=float, default=0.2)
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    test, fit, train = order[:360], order[360:500], order[500:]  # identical on every rank

    torch.manual_seed(0)  # same initial weights on every particle
    model = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    swarm = Swarm(
        model,
        optimizer,
        fitness=loss_fitness(x[fit], y[fit]),
        period=args.period,
        pressure=args.pressure,
    )
    shuffle = torch.Generator().manual_seed(rank)  # each particle sees its own order
    with swarm:
        for _ in range(args.epochs):
            for batch in train[torch.randperm(len(train), generator=shuffle)].split(32):
                loss = F.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    state = swarm.finalize()  # every rank now holds the best particle; this is its state dict
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
        checksum = sum(float(t.double().sum()) for t in state.values())
    print(f"rank {rank} checksum {checksum:.10e}", flush=True)
    if rank == 0:
        print(
            f"sync rounds {len(swarm.history)}, best particle {swarm.best_particle}, "
            f"test accuracy {accuracy:.4f}",
            flush=True,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
