"""Checkpoints of the whole swarm: each rank's file, its digest, and ``latest.json`` naming the
newest complete set; all written atomically (:mod:`nosync.files`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from nosync.errors import UserError
from nosync.files import WriteFailed as WriteFailed  # (their old home: the names still import)
from nosync.files import atomic_write_bytes, atomic_write_text
from nosync.files import write_failed as write_failed
from nosync.run.compat import upgrade


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# ---- checkpoints of the whole swarm ------------------------------------------------------------
# OUT/checkpoints/step-000000500/rank-00003.pt  one file per rank, written atomically
# OUT/checkpoints/step-000000500/rank-00003.sha256  that file's digest, written right after it
# OUT/checkpoints/latest.json                   names the newest complete set and every file's
#                                               sha256; written last
#
# Every rank saves at the same step (a stop vote or a checkpoint step, both collective), then a
# barrier, then rank 0 commits ``latest.json``.  A kill at any point leaves ``latest.json``
# naming a set whose files are all complete.  Each rank reads its own file back, so a multi-node
# run resumes only where every node sees the folder (a shared filesystem); each file is checked
# against the digest in ``latest.json`` first, so flipped bytes are refused, not trained on; a
# ``latest.json`` without a digest for every file is refused too, since it cannot be checked.

# What may not change between a checkpoint and the run that resumes it: what makes it this run.
FIXED_ON_RESUME = (
    "strategy",
    "rule",
    "workers",
    "ranks_per_particle",
    "model",
    "dataset",
    "train_subset",
    "fitness_size",
    "batch_size",
    "seed",
    "shard",
    "init",
    "lr_schedule",
    "steps",
    "epochs",
    "topology",
)
# What a flag given with --resume may change; it takes effect from the resumed step and is
# recorded in config.toml.  Every other setting is restored with the optimizer, scheduler and
# swarm state (or shapes the data order), so a new value would be ignored: it is refused instead.
ADJUSTABLE_ON_RESUME = (
    "out",
    "resume",
    "quiet",
    "verbose",
    "threads",
    "device",
    "compile",
    "timeout",
    "max_restarts",
    "port",
    "checkpoint_every",
    "eval_every",
    "inject",
    "data_dir",
    "stragglers",
)
KEEP = 2  # complete checkpoint sets kept on disk


def checkpoint_root(out: str | os.PathLike[str]) -> Path:
    return Path(out) / "checkpoints"


def rank_path(out: str | os.PathLike[str], step: int, rank: int) -> Path:
    return checkpoint_root(out) / f"step-{step:09d}" / f"rank-{rank:05d}.pt"


def save_rank(out: str | os.PathLike[str], step: int, rank: int, state: dict[str, Any]) -> None:
    """This rank's file, then its digest next to it (rank 0 gathers the digests in ``commit``)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = rank_path(out, step, rank)
    atomic_write_bytes(path, data)
    atomic_write_text(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest() + "\n")


def _digest(path: Path) -> str:
    sidecar = path.with_suffix(".sha256")
    try:
        return sidecar.read_text().strip()
    except OSError:  # written by an older version: hash the file itself
        return hashlib.sha256(path.read_bytes()).hexdigest()


def commit(out: str | os.PathLike[str], step: int, world: int, config: dict[str, Any]) -> None:
    """Rank 0, after every rank saved ``step``: point ``latest.json`` at it (with each file's
    sha256), prune older sets."""
    root = checkpoint_root(out)
    folder = root / f"step-{step:09d}"
    digests = {
        f"rank-{rank:05d}.pt": _digest(folder / f"rank-{rank:05d}.pt") for rank in range(world)
    }
    record = {
        "step": step,
        "world": world,
        "dir": folder.name,
        "config": config,
        "sha256": digests,
    }
    atomic_write_text(root / "latest.json", json.dumps(record, indent=2) + "\n")
    sets = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in sets[:-KEEP]:
        if old.name != record["dir"]:
            shutil.rmtree(old, ignore_errors=True)


def latest(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The newest complete checkpoint set, or None when there is none."""
    path = checkpoint_root(out) / "latest.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        _ = record["step"], record["world"], record["dir"], record["config"]
        names = [f"rank-{rank:05d}.pt" for rank in range(record["world"])]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"resume: corrupt checkpoint index {path}: {err}") from None
    digests = record.get("sha256")
    unchecked = [n for n in names if not isinstance(digests, dict) or not digests.get(n)]
    if unchecked:  # without the digest a flipped byte would be trained on: refuse instead
        raise UserError(
            f"resume: corrupt checkpoint index {path}: it records no sha256 of "
            f"{', '.join(unchecked)}, so those files cannot be checked"
        )
    return record


def load_rank(out: str | os.PathLike[str], record: dict[str, Any], rank: int) -> dict[str, Any]:
    path = checkpoint_root(out) / record["dir"] / f"rank-{rank:05d}.pt"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"resume: checkpoint file {path} is missing") from None
    except OSError as err:
        raise UserError(f"resume: cannot read checkpoint {path}: {err.strerror}") from None
    expected = record["sha256"][path.name]  # latest() made sure it is there
    if hashlib.sha256(data).hexdigest() != expected:
        raise UserError(
            f"resume: corrupt checkpoint {path}: its sha256 differs from the one recorded in "
            "latest.json"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise UserError(f"resume: corrupt checkpoint {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("step") != record["step"]:
        raise UserError(f"resume: checkpoint {path} does not belong to step {record['step']}")
    return state


def check_resumable(out: str | os.PathLike[str], config: dict[str, Any]) -> dict[str, Any]:
    """Before launching ``--resume``: the set exists, every file loads, the run is the same.

    Both configurations are compared in today's spelling (an older nosync wrote ``delay = -1``
    for automatic and ``exchange`` for ``wire_dtype``).
    """
    record = latest(out)
    if record is None:
        raise UserError(
            f"resume: no checkpoint in {checkpoint_root(out)} (the run stopped before its first "
            "one); start it afresh without --resume"
        )
    saved, config = upgrade(record["config"], warn=False), upgrade(config, warn=False)
    changed = [
        f"{key}={saved.get(key)!r} (now {config[key]!r})"
        for key in FIXED_ON_RESUME
        if saved.get(key) != config[key]
    ]
    if changed:
        raise UserError(f"resume: the checkpoint is of a different run: {', '.join(changed)}")
    frozen = [
        f"{key}={saved[key]!r} (now {config[key]!r})"
        for key in config
        if key not in ADJUSTABLE_ON_RESUME and key in saved and saved[key] != config[key]
    ]
    if frozen:
        adjustable = ", ".join("--" + k.replace("_", "-") for k in ADJUSTABLE_ON_RESUME[2:])
        raise UserError(
            f"resume: cannot change {', '.join(frozen)} when resuming (the checkpoint restores "
            f"it); only {adjustable} may change"
        )
    for rank in range(record["world"]):
        load_rank(out, record, rank)
    return record
