"""The strategies' names, without torch: what the configuration's ``strategy`` field, the
``--strategy`` choices and the validation read (``nosync.run.config`` and the command line load
before torch).  :data:`nosync.run.strategies.registry.REGISTRY` binds each name to its class; a
test keeps the two the same.
"""

from __future__ import annotations

STRATEGIES = ("nosync", "single", "ddp", "localsgd", "easgd", "diloco")
SWARMS = ("nosync", "easgd")  # the strategies whose rounds a Swarm runs
