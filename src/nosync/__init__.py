"""nosync: swarm training for PyTorch (NoSync, Isakov & Kinsy, ICANN 2018, reconstructed).

Workers each train their own model (a particle) and every ``period`` steps are pulled toward the
best one.  The public API is :class:`Swarm`; ``nosync train`` runs it from the command line.
"""

from .evaluate import loss_fitness
from .rules import REGISTRY, RULES, Rule
from .swarm import Swarm, SwarmDivergedError, particle_groups
from .transport import LocalWorld

__all__ = [
    "REGISTRY",
    "RULES",
    "LocalWorld",
    "Rule",
    "Swarm",
    "SwarmDivergedError",
    "loss_fitness",
    "particle_groups",
]
__version__ = "0.1.0"
