"""Crashes, hangs, NaNs and Ctrl+C, driven through the real CLI in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nosync.run.metrics import read_metrics

from support.fixtures import DEFAULT_SWARM, Interrupted
from support.helpers import (
    alive,
    checkpoint_step,
    descendants,
    nosync,
    start_nosync,
    summary,
    wait_for,
    worker_pids,
    write_user_module,
)

# digits, long enough to interrupt: 800 steps, a checkpoint every 3 rounds of 10 steps
LONG = ["--workers", "2", "--steps", "800", "--period", "10", "--checkpoint-every", "3", "--quiet"]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "final.pt", weights_only=False)["state_dict"]


def test_ctrl_c_checkpoints_exits_130_and_resume_matches_an_uninterrupted_run(
    ctrl_c_resumed: Interrupted,
) -> None:
    """The run of ``support.fixtures.CTRL_C`` (pso: velocity and personal best must survive the
    resume), shared with the async tests."""
    run = ctrl_c_resumed
    assert len(run.workers) == 2
    err = run.stopped.stderr
    assert run.stopped.returncode == 130, err
    assert "Traceback" not in err
    assert run.lingering == []  # every child process exited within 10 s
    stopped_at = run.stopped_at
    assert stopped_at is not None and stopped_at < 800
    hint = f"continue from the checkpoint at step {stopped_at} with: nosync train --resume"
    assert err.strip().splitlines()[-1].endswith(f"{hint} {run.cut}"), err
    assert not run.summary_after_stop

    assert run.resumed.returncode == 0, run.resumed.stderr
    assert f"resuming from the checkpoint at step {stopped_at}" in run.resumed.stderr
    assert run.finished_whole.returncode == 0, run.finished_whole.stderr
    cut, ref = final_weights(run.cut), final_weights(run.whole)
    assert all(torch.equal(cut[k], ref[k]) for k in ref)  # exactly the same weights
    cut_rounds = [r for r in read_metrics(run.cut / "metrics.jsonl") if r["type"] == "round"]
    assert [r["step"] for r in cut_rounds] == list(range(10, 801, 10))  # nothing logged twice


def test_kill_9_of_a_worker_restarts_the_group_from_the_last_checkpoint(tmp_path) -> None:
    out = tmp_path / "run"
    run = start_nosync("train", *LONG, "--max-restarts", "1", "--out", str(out))
    wait_for(lambda: (checkpoint_step(out) or 0) >= 60, 120, "a checkpoint at step 60")
    saved = checkpoint_step(out)
    victim = worker_pids(run.pid)[-1]
    killed_at = time.monotonic()
    subprocess.run(["kill", "-9", str(victim)], check=True)
    _, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    # The survivor may report the lost peer or be stopped by the agent first; the restart
    # itself is always announced.
    assert "restart 1 after a worker failed: resuming from the checkpoint" in err, err
    s = summary(out)
    assert s["restarts"] == 1 and s["test_accuracy"] > 0.9
    resumes = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] >= saved  # at most one interval lost
    assert time.monotonic() - killed_at < 120


def test_a_hung_worker_fails_the_others_within_the_timeout_and_restart_takes_over(tmp_path) -> None:
    out = tmp_path / "run"
    run = start_nosync(
        "train", *LONG, "--round", "async", "--timeout", "10", "--max-restarts", "1",
        "--out", str(out),
    )  # fmt: skip
    wait_for(lambda: checkpoint_step(out), 120, "a first checkpoint")
    victim = worker_pids(run.pid)[-1]
    subprocess.run(["kill", "-STOP", str(victim)], check=True)
    _, err = run.communicate(timeout=180)  # 10 s timeout + the agent's 30 s grace + the rest
    assert run.returncode == 0, err
    assert "no answer from another rank within --timeout 10 s" in err
    assert "Traceback" not in err  # one line per failing rank; tracebacks behind --verbose
    assert summary(out)["restarts"] == 1
    assert not alive(victim)


def test_a_diverging_particle_is_reset_and_the_run_ends_as_it_would_have(
    default_swarm, tmp_path
) -> None:
    clean, _ = default_swarm  # the same run without the fault
    hurt = nosync("train", *DEFAULT_SWARM, "--inject", "nan@60:1", "--out", str(tmp_path / "hurt"))
    assert hurt.returncode == 0, hurt.stderr
    assert "injecting NaN weights at step 60" in hurt.stderr
    assert "particle 1 diverged" in hurt.stderr
    rounds = [r for r in read_metrics(tmp_path / "hurt" / "metrics.jsonl") if r["type"] == "round"]
    first_after = next(r for r in rounds if r["step"] > 60)
    assert first_after["reset"] == [1] and first_after["fitness"][1] is None
    assert first_after["leader"] != 1
    assert all(r["reset"] == [] for r in rounds if r["step"] > first_after["step"])
    acc_clean = summary(clean)["test_accuracy"]
    acc_hurt = summary(tmp_path / "hurt")["test_accuracy"]
    assert acc_hurt >= 0.95 and abs(acc_hurt - acc_clean) <= 0.02


def test_an_interrupted_atomic_write_leaves_the_previous_file(tmp_path) -> None:
    target = tmp_path / "state.pt"
    script = (
        "import sys, torch; from nosync.run.checkpoint import atomic_torch_save\n"
        "i = 0\n"
        "while True:\n"
        "    atomic_torch_save({'i': i, 'w': torch.full((500_000,), float(i))}, sys.argv[1])\n"
        "    i += 1\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(target)])
    wait_for(target.exists, 60, "the first write")
    time.sleep(0.5)
    writer.kill()
    writer.wait()
    state = torch.load(target, weights_only=True)
    assert torch.equal(state["w"], torch.full((500_000,), float(state["i"])))
    assert not [
        p for p in tmp_path.iterdir() if p.name != "state.pt" and not p.name.endswith(".tmp")
    ]


def test_a_run_folder_is_never_overwritten(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text("seed = 1\n")
    result = nosync("train", "--steps", "5", "--out", str(out))
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert (out / "config.toml").read_text() == "seed = 1\n"


def test_resume_refuses_a_checkpoint_of_another_run_or_a_corrupt_one(
    finished_run, tmp_path
) -> None:
    finished_run = Path(shutil.copytree(finished_run, tmp_path / "run"))  # spoilt below
    other = nosync("train", "--resume", str(finished_run), "--workers", "4", "--print-config")
    assert other.returncode == 0  # print-config does not touch the checkpoint
    for flags, message in [
        (["--workers", "4"], "different run: workers=2 (now 4)"),
        (["--model", "cnn"], "model='mlp' (now 'cnn')"),
    ]:
        result = nosync("train", "--resume", str(finished_run), *flags)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    latest = json.loads((finished_run / "checkpoints" / "latest.json").read_text())
    rank_file = finished_run / "checkpoints" / latest["dir"] / "rank-00001.pt"
    rank_file.write_bytes(rank_file.read_bytes()[:100])
    result = nosync("train", "--resume", str(finished_run))
    assert result.returncode == 2 and "corrupt checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_kill_9_of_the_launcher_leaves_no_process_behind(tmp_path) -> None:
    out = tmp_path / "run"
    run = start_nosync("train", *LONG, "--steps", "1000000", "--out", str(out))
    wait_for(lambda: len(worker_pids(run.pid)) == 2, 120, "both ranks")
    everything = descendants(run.pid)  # ranks, their fork server, the resource tracker
    assert len(everything) >= 4
    run.kill()
    run.wait(timeout=30)
    wait_for(lambda: not any(alive(p) for p in everything), 30, "every child process to exit")


def test_ctrl_c_in_the_first_seconds_is_one_line_and_a_true_hint(tmp_path) -> None:
    out = tmp_path / "run"
    run = subprocess.Popen(
        [sys.executable, "-m", "nosync", "train", *LONG, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal would make
    )
    time.sleep(1.0)  # still starting: importing torch, checking, starting the ranks
    os.killpg(run.pid, signal.SIGINT)  # Ctrl+C reaches every process of the group
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    last = err.strip().splitlines()[-1]
    if checkpoint_step(out) is None:
        assert len(err.strip().splitlines()) == 1, err
        assert "--resume" not in err and "nothing" in last, err
    else:  # the ranks were up: they stopped at their first vote and saved a checkpoint there
        assert f"nosync train --resume {out}" in last


def test_a_run_listens_on_loopback_only_and_a_second_ctrl_c_stops_it_at_once(tmp_path) -> None:
    """While every rank runs, the rendezvous store and rank 0's store are the run's only
    listeners, on loopback (torch's TCPStore alone binds every interface).  Then the first
    Ctrl+C cannot finish (a rank is SIGSTOPped, the stop vote never comes); a second one kills
    the ranks at once instead of the agent's two 30-second graces.  (One run for both: each
    needs a long run with every rank up.)"""
    import ipaddress

    from support.helpers import listeners

    out = tmp_path / "run"
    run = subprocess.Popen(
        [sys.executable, "-m", "nosync", "train", *LONG, "--steps", "1000000", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal would make
    )
    wait_for(lambda: checkpoint_step(out), 120, "a first checkpoint")
    found = listeners([run.pid, *descendants(run.pid)])
    assert len(found) >= 2, found  # the launcher's rendezvous store and rank 0's store
    assert all(ipaddress.ip_address(a.rsplit(":", 1)[0]).is_loopback for a in found), found
    ranks = worker_pids(run.pid)
    os.kill(ranks[-1], signal.SIGSTOP)
    os.killpg(run.pid, signal.SIGINT)
    time.sleep(4)  # a deliberate second press (the ranks count presses 3 s apart)
    second = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert time.monotonic() - second < 20, err  # before: 32 s here (the agent's grace)
    assert run.returncode == 130, err
    assert "Traceback" not in err, err
    assert f"nosync train --resume {out}" in err.strip().splitlines()[-1]
    assert not any(alive(p) for p in ranks)


BOOM = """
from torch import nn


class Boom(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.lin, self.calls = nn.Linear(64, classes), 0

    def forward(self, x):
        self.calls += 1
        if self.training and self.calls > 5:  # past the preflight's checks, in training
            raise RuntimeError("boom at call 6")
        return self.lin(x.flatten(1))


def boom(input_shape, classes):
    return Boom(classes)
"""


def test_a_failing_rank_prints_its_traceback_with_verbose(tmp_path) -> None:
    """Without ``--verbose`` a failing rank is one line (the hung-worker test checks it); with
    it, the rank's traceback follows."""
    (tmp_path / "boom.py").write_text(BOOM)
    flags = ["--strategy", "single", "--workers", "1", "--steps", "50", "--threads", "1"]
    flags += ["--quiet", "--model", f"{tmp_path / 'boom.py'}:boom", "--verbose"]
    full = nosync("train", *flags, "--out", str(tmp_path / "full"))
    assert full.returncode == 1, full.stderr
    assert "nosync: rank 0: RuntimeError: boom at call 6" in full.stderr
    assert "Traceback" in full.stderr and 'raise RuntimeError("boom at call 6")' in full.stderr


# ---- issue 17 items 4 and 11: a diverged run ----------------------------------------------------
def _diverged_once(result: subprocess.CompletedProcess[str], out: Path) -> int:
    """One line that says where it diverged and what to try, exit 3, no resume hint, no
    traceback; summary.json says so too and there is no final model.  Returns the step."""
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if "injecting NaN weights" not in line]
    assert len(lines) == 1 and lines[0].startswith("nosync: training diverged at step "), lines
    assert "try a lower --lr" in lines[0] and "--resume" not in result.stderr
    step = summary(out)["diverged"]["step"]
    assert f"at step {step} " in lines[0] and summary(out)["test_accuracy"] is None
    assert not (out / "final.pt").exists()
    assert read_metrics(out / "metrics.jsonl")[-1] == {"type": "diverged", "step": step}
    return step


@pytest.mark.parametrize("how", ["lr", "fitness"])
def test_a_diverged_baseline_says_so_once_and_exits_3(tmp_path, how) -> None:
    """Weights gone NaN (found by a vote), or only the fitness infinite at the end (nothing for
    the end's selection to pick)."""
    out = tmp_path / "run"
    if how == "lr":
        flags = ["--lr", "50"]
    else:
        flags = ["--loss", f"{write_user_module(tmp_path / 'user')}:inf_when_evaluated"]
    result = nosync(
        "train", "--strategy", "localsgd", *flags, "--workers", "2", "--steps", "60", "--quiet",
        "--out", str(out),
    )  # fmt: skip
    step = _diverged_once(result, out)
    assert 0 < step < 60 if how == "lr" else step == 60


def test_a_swarm_whose_particles_all_diverge_exits_3_and_leaves_a_reusable_folder(
    tmp_path,
) -> None:
    """(Also the one test of a whole swarm's divergence from the command line: found at the
    first round after the NaNs.)"""
    out = tmp_path / "run"
    nan = ["--inject", "nan@5:0,nan@5:1"]
    flags = ["--workers", "2", "--steps", "60", "--period", "10", "--quiet", *nan]
    result = nosync("train", *flags, "--out", str(out))
    assert _diverged_once(result, out) == 10  # the first round after step 5
    fresh = nosync("train", "--steps", "10", "--quiet", "--out", str(out))
    assert fresh.returncode == 0, fresh.stderr
    assert "diverged" not in summary(out) and (out / "final.pt").exists()


def test_kill_9_during_explore_restarts_with_the_population_of_the_checkpoint(tmp_path) -> None:
    """Issue 19: a restart resumes the hyperparameters and the lineage with the weights.  Had
    the restarted group started a new population, the summary's copies would miss those made
    before the kill, and the values of the first round after it would not follow the last
    round the checkpoint holds."""
    out = tmp_path / "run"
    explore = ["--explore", "lr=0.01..0.5:log", "--exploit-every", "2"]
    run = start_nosync("train", *LONG, *explore, "--max-restarts", "1", "--out", str(out))
    wait_for(lambda: (checkpoint_step(out) or 0) >= 120, 120, "a checkpoint at step 120")
    subprocess.run(["kill", "-9", str(worker_pids(run.pid)[-1])], check=True)
    _, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    assert "restart 1 after a worker failed: resuming from the checkpoint" in err, err
    s = summary(out)
    records = read_metrics(out / "metrics.jsonl")
    resumed_at = next(r["step"] for r in records if r["type"] == "resume")
    rounds = [r for r in records if r["type"] == "round"]
    assert [r["step"] for r in rounds] == list(range(10, 801, 10))  # nothing logged twice
    copies = [e for r in rounds for e in r["explore"]["exploits"]]
    before = [e for r in rounds if r["step"] <= resumed_at for e in r["explore"]["exploits"]]
    assert s["restarts"] == 1 and before and s["explore"]["exploits"] == len(copies)
    last = next(r for r in rounds if r["step"] == resumed_at)["explore"]["values"]
    first = next(r for r in rounds if r["step"] > resumed_at)["explore"]
    moved = {e["particle"] for e in first["exploits"]}
    assert all(first["values"][i] == last[i] for i in range(2) if i not in moved)
