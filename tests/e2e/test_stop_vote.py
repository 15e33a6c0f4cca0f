"""The stop vote has a cadence of its own: Ctrl+C is honoured quickly even when a period is
longer than torch's agent would wait, and the run resumes to the same weights."""

from __future__ import annotations

import signal
import time

import torch

from support.helpers import checkpoint_step, nosync, start_nosync, wait_for

# far longer than the run: no round and no periodic checkpoint ever happens
FLAGS = ["--workers", "2", "--steps", "3000", "--period", "1000000", "--quiet", "--threads", "1"]


def test_ctrl_c_with_a_period_longer_than_the_run_checkpoints_and_resumes(tmp_path) -> None:
    out = tmp_path / "cut"
    run = start_nosync("train", *FLAGS, "--out", str(out))
    wait_for(lambda: (out / "metrics.jsonl").exists(), 120, "the run to start")
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    stopped = checkpoint_step(out)
    assert stopped is not None and 0 < stopped < 3000, err  # saved at a vote, mid-period
    assert f"nosync train --resume {out}" in err
    resumed = nosync("train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    whole = nosync("train", *FLAGS, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    cut = torch.load(out / "final.pt", weights_only=False)["state_dict"]
    ref = torch.load(tmp_path / "whole" / "final.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(cut[k], ref[k]) for k in ref)
