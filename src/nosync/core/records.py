"""The typed record of one round, as kept in ``history``, checkpoints and ``metrics.jsonl``.

One shape for every strategy that has rounds (a swarm rule, local SGD), built by one function,
so that writers (``swarm``, ``strategies``) and readers (``monitor``, ``report``, ``compare``)
agree on the keys.  Plain dicts (a ``TypedDict``) so that checkpoints stay loadable with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class RoundRecord(TypedDict):
    round: int  # 1, 2, ... on this run
    step: int  # the optimizer step after which the round ran
    fitness: list[float | None] | None  # per particle (None: diverged or unknown); None: no fitness
    leader: int | None  # this particle's (local) leader; None without fitness
    distance: list[float | None] | None  # per particle, to the pull target before the pull
    target: str | None  # what the rule pulled toward: "leader", "mean", "center" or None
    pressure: float | None
    reset: list[int]  # particles replaced whole this round (diverged)
    train_loss: list[float | None] | None  # per particle: mean training loss since the last round
    seconds: float  # wall time from the round's start to its pull landing, on this rank
    blocked_seconds: float  # of which the training thread was held up (waiting + work on it)
    comm_seconds: float  # in collectives (waiting for slower ranks included; in the background
    #                      for async rounds)
    comm_bytes: int  # payload bytes of those collectives on this rank
    applied_step: int  # the optimizer step after which the pull landed (== step when blocking)
    explore: NotRequired[dict]  # ``--explore``: every particle's values, this round's copies


def round_record(
    round_: int,
    step: int,
    *,
    fitness: list[float | None] | None = None,
    leader: int | None = None,
    distance: list[float | None] | None = None,
    target: str | None = None,
    pressure: float | None = None,
    reset: list[int] | None = None,
    train_loss: list[float | None] | None = None,
    seconds: float = 0.0,
    blocked_seconds: float = 0.0,
    comm_seconds: float = 0.0,
    comm_bytes: int = 0,
    applied_step: int | None = None,
) -> RoundRecord:
    return RoundRecord(
        round=round_,
        step=step,
        fitness=fitness,
        leader=leader,
        distance=distance,
        target=target,
        pressure=pressure,
        reset=list(reset or []),
        train_loss=train_loss,
        seconds=seconds,
        blocked_seconds=blocked_seconds,
        comm_seconds=comm_seconds,
        comm_bytes=comm_bytes,
        applied_step=step if applied_step is None else applied_step,
    )
