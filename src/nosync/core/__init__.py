"""The swarm and its round: what ``from nosync import Swarm`` gives a training loop.

``swarm`` hooks ``optimizer.step`` and runs a round every ``period`` steps; a round is
``planner`` (fitness, leader, resets, neighbours) then ``exchange`` over a ``transport``
(``torch.distributed`` or threads) then a ``rules`` object (the pull).  Nothing here knows about
a run's configuration, the command line, the launcher or the tools: this package imports only
itself and ``nosync.errors`` (``tests/unit/test_architecture.py`` checks it).
"""
