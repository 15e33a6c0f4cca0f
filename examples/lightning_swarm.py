"""A LightningModule trained as a swarm: each Trainer process is one particle.

    python examples/lightning_swarm.py --devices 2 --steps 60 --out runs/lightning

``LightningSwarmStrategy`` starts the processes (DDP's launcher and process group, no gradient
all-reduce); ``SwarmCallback`` pulls the particles toward the best one every ``--period`` steps
and leaves every process holding the best particle at the end.  Each process writes
``OUT/rank-R.json`` (its rounds and a checksum of its final weights); rank 0 prints the swarm's
result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nosync import loss_fitness
from nosync.integrations.lightning import LightningSwarmStrategy, SwarmCallback


class Classifier(pl.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def digits() -> tuple[TensorDataset, torch.Tensor, torch.Tensor]:
    """Training set, and a held-out fitness set (the same on every particle)."""
    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16
    y = torch.tensor(bunch.target)
    return TensorDataset(x[200:], y[200:]), x[:200], y[:200]


def checksum(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--period", type=int, default=10)
    parser.add_argument("--pressure", type=float, default=0.5)
    parser.add_argument("--out", default="runs/lightning")
    args = parser.parse_args()
    pl.seed_everything(0, verbose=False)  # the same initial weights on every particle
    train, x_fit, y_fit = digits()
    swarm = SwarmCallback(loss_fitness(x_fit, y_fit), period=args.period, pressure=args.pressure)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        # the distributed sampler gives each particle its own shard
        strategy=LightningSwarmStrategy(),
        max_steps=args.steps,
        callbacks=[swarm],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Classifier()
    trainer.fit(model, DataLoader(train, batch_size=32, shuffle=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "rank": trainer.global_rank,
        "checksum": checksum(model),
        "rounds": [{"step": r["step"], "fitness": r["fitness"]} for r in swarm.history],
        "best_particle": swarm.best_particle,
    }
    (out / f"rank-{trainer.global_rank}.json").write_text(json.dumps(record) + "\n")
    if trainer.global_rank == 0:  # the swarm's result (Lightning prints only its own banners)
        final = (swarm.swarm.final_fitness if swarm.swarm else None) or []
        print(
            f"swarm of {trainer.world_size} particles, {len(swarm.history)} rounds; fitness at "
            f"the end {', '.join('-' if f is None else f'{f:.4f}' for f in final)} (held-out "
            f"loss, lower is better): every rank now holds particle {swarm.best_particle}; "
            f"records in {out}/",
            flush=True,
        )


if __name__ == "__main__":
    main()
