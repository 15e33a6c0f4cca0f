"""``--logger tensorboard``: which metrics record feeds which scalar (a fake writer stands in
for TensorBoard's, so no event file is read here; tests/e2e/test_byo.py reads real ones)."""

from __future__ import annotations

from typing import Any

from nosync.core.records import round_record
from nosync.run.config import resolve
from nosync.run.loggers import TensorBoard


class FakeWriter:
    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[float, int]]] = {}

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.setdefault(tag, []).append((value, step))


def _board() -> tuple[TensorBoard, FakeWriter]:
    board = object.__new__(TensorBoard)  # no SummaryWriter, no event files
    writer = FakeWriter()
    board.writer = writer  # type: ignore[assignment]
    board.cfg, board.total, board.ranks = resolve({}, {"dataset": "digits"}), 100, 1
    return board, writer


def test_a_rounds_blocked_and_comm_seconds_go_to_their_own_tags() -> None:
    board, writer = _board()
    times = {"seconds": 0.5, "blocked_seconds": 0.25, "comm_seconds": 0.125}
    record: dict[str, Any] = dict(
        round_record(1, 25, target="leader", pressure=0.3, comm_bytes=4096, **times)
    )
    board.write({"type": "round", **record})
    assert writer.scalars["round/seconds"] == [(0.5, 25)]
    assert writer.scalars["round/blocked_seconds"] == [(0.25, 25)]
    assert writer.scalars["round/comm_seconds"] == [(0.125, 25)]
    assert writer.scalars["round/bytes"] == [(4096, 25)]
    # the old tag keeps its old meaning (time in collectives) for one release
    assert writer.scalars["round/seconds_blocked"] == [(0.125, 25)]


def test_explore_writes_each_particles_hyperparameters_and_the_copies() -> None:
    board, writer = _board()
    record: dict[str, Any] = dict(round_record(2, 50, target="leader", pressure=0.3))
    record["explore"] = {
        "values": [{"lr": 0.1, "weight_decay": 0.0}, {"lr": 0.02, "weight_decay": 1e-4}],
        "exploits": [{"particle": 1, "donor": 0, "values": {"lr": 0.02, "weight_decay": 1e-4}}],
    }
    board.write({"type": "round", **record})
    assert writer.scalars["explore/lr/particle_0"] == [(0.1, 50)]
    assert writer.scalars["explore/lr/particle_1"] == [(0.02, 50)]
    assert writer.scalars["explore/weight_decay/particle_1"] == [(1e-4, 50)]
    assert writer.scalars["explore/copies"] == [(1, 50)]
    board.write({"type": "round", **dict(round_record(3, 75))})  # no --explore: no tags
    assert writer.scalars["explore/copies"] == [(1, 50)]
