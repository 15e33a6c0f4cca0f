"""A run folder written by an older nosync (``delay = -1``, ``outer_lr = 0`` for automatic, the
key ``exchange``) still resumes, quietly, to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
import torch

from support.helpers import nosync

RUN = ["--workers", "2", "--steps", "40", "--period", "10", "--checkpoint-every", "2", "--quiet"]


def as_older_nosync_wrote_it(config: dict[str, Any]) -> dict[str, Any]:
    old = {k: v for k, v in config.items() if k != "wire_dtype"}
    return old | {"outer_lr": 0.0, "delay": -1}  # (outer_momentum was always written resolved)


def test_a_run_folder_of_an_older_nosync_resumes_to_the_same_weights(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert nosync("train", *RUN, "--threads", "1", "--out", str(out)).returncode == 0
    whole = torch.load(out / "final.pt", weights_only=False)["state_dict"]
    config = tomllib.loads((out / "config.toml").read_text())
    assert (config["delay"], config["exchange"], config["wire_dtype"]) == ("auto", *["float32"] * 2)
    (out / "config.toml").write_text(tomli_w.dumps(as_older_nosync_wrote_it(config)))
    latest_path = out / "checkpoints" / "latest.json"
    latest = json.loads(latest_path.read_text())
    halfway = out / "checkpoints" / "step-000000020"  # back to the checkpoint before the last
    digests = {p.with_suffix(".pt").name: p.read_text().strip() for p in halfway.glob("*.sha256")}
    latest |= {"step": 20, "dir": halfway.name, "sha256": digests}
    latest["config"] = as_older_nosync_wrote_it(latest["config"])
    latest_path.write_text(json.dumps(latest))
    (out / "final.pt").unlink()

    resumed = nosync("train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint at step 20" in resumed.stderr
    assert "warning" not in resumed.stderr, resumed.stderr  # nosync's own file: nothing to fix
    again = torch.load(out / "final.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(again[k], whole[k]) for k in whole)
