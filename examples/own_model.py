"""Your own model, dataset and loss for ``nosync train``, as ``FILE.py:CALLABLE``.

    nosync train --model examples/own_model.py:gru --dataset examples/own_model.py:waves \
        --loss examples/own_model.py:smooth_loss --optimizer adam --lr 0.01 --workers 2

A GRU on a synthetic sequence task (which of three frequencies a noisy wave carries), its own
map-style dataset class, and a label-smoothed loss.  Every strategy, ``compare``, ``simulate``,
checkpoints and exact resume work with them as with the built-ins.  The tests train on this
file (``tests/support/helpers.py``), so it stays runnable.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


class Waves(Dataset):
    """Sequences of 12 steps x 2 channels; the label is which of 3 frequencies they carry."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        t = torch.arange(12).float()
        phase = torch.rand(n, 1, generator=g) * 6.28
        wave = (self.y.float() + 1).unsqueeze(1) * 0.5 * t + phase
        noise = 0.3 * torch.randn(n, 12, 2, generator=g)
        self.x = torch.stack([wave.sin(), wave.cos()], -1) + noise

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def waves():
    """``--dataset``: ``(train, test)``, two map-style datasets of ``(input, label)``."""
    return Waves(230, 0), Waves(60, 1)


class GRUNet(nn.Module):
    def __init__(self, input_shape, classes):
        super().__init__()
        self.gru = nn.GRU(input_shape[-1], 8, batch_first=True)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.gru(x)[1][-1])


def gru(input_shape, classes):
    """``--model``: called with the input shape of one sample and the number of classes."""
    return GRUNet(input_shape, classes)


def smooth_loss(output, target):
    """``--loss``: a scalar from ``(batch, classes)`` scores and integer labels."""
    return F.cross_entropy(output, target, label_smoothing=0.1)
