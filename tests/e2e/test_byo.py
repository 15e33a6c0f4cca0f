"""Bring your own model, dataset, loss and optimizer through ``train``, ``compare`` and
``simulate``; exact resume, Adam state in checkpoints, TensorBoard scalars, final.safetensors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from nosync.cli import main
from nosync.run.export import load_safetensors
from nosync.run.metrics import read_metrics

from support.fixtures import made_once
from support.helpers import nosync, summary, write_user_module

SHORT = ["--steps", "40", "--period", "10", "--batch-size", "16", "--quiet"]


def user_flags(module: Path) -> list[str]:
    return [
        "--model", f"{module}:gru", "--dataset", f"{module}:waves",
        "--loss", f"{module}:smooth_loss", "--optimizer", "adam", "--lr", "0.01",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def user_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Two particles of a user GRU, Adam, TensorBoard on, batches from a DataLoader worker
    process; checkpoints at steps 20 and 40."""

    def make(root: Path) -> tuple[Path, list[str]]:
        flags = [*user_flags(write_user_module(root)), "--workers", "2", "--loader-workers", "1"]
        flags += SHORT
        out = root / "run"
        result = nosync(
            "train", *flags, "--checkpoint-every", "2", "--logger", "tensorboard",
            "--out", str(out),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return out, flags

    return made_once(tmp_path_factory, "byo_user_run", make)  # one run for every worker


def test_a_user_model_dataset_and_loss_train_as_a_swarm(user_run) -> None:
    out, _ = user_run
    s = summary(out)
    assert s["particles"] == 2 and s["sync_rounds"] == 4 and 0 <= s["test_accuracy"] <= 1
    state = torch.load(out / "final.pt", weights_only=True)["state_dict"]
    assert any(k.startswith("gru.") for k in state)  # the user's model, not a built-in


def test_resume_from_a_mid_epoch_checkpoint_is_bit_identical(user_run, tmp_path) -> None:
    """Roll a finished run back to its step-20 checkpoint (mid-epoch: 12 steps per epoch) and
    resume it: the DataLoader's sampler starts mid-epoch, Adam and the swarm continue."""
    out, _ = user_run
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    shutil.rmtree(cut / "checkpoints" / "step-000000040")
    latest = json.loads((cut / "checkpoints" / "latest.json").read_text())
    step20 = cut / "checkpoints" / "step-000000020"
    digests = {f.with_suffix(".pt").name: f.read_text().strip() for f in step20.glob("*.sha256")}
    latest.update(step=20, dir="step-000000020", sha256=digests)
    (cut / "checkpoints" / "latest.json").write_text(json.dumps(latest))
    for name in ("final.pt", "final.safetensors", "summary.json"):
        (cut / name).unlink()
    result = nosync("train", "--resume", str(cut))
    assert result.returncode == 0, result.stderr
    assert "resuming from the checkpoint at step 20" in result.stderr
    a = torch.load(out / "final.pt", weights_only=True)["state_dict"]
    b = torch.load(cut / "final.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert summary(cut)["leaders"] == summary(out)["leaders"]


def test_resume_refuses_another_optimizer(user_run, capsys) -> None:
    out, _ = user_run
    code = main(["train", "--resume", str(out), "--optimizer", "sgd"])
    assert code == 2
    assert "resume: cannot change optimizer='adam' (now 'sgd')" in capsys.readouterr().err


def test_checkpoints_hold_adam_state(user_run) -> None:
    out, _ = user_run
    state = torch.load(out / "checkpoints" / "step-000000040" / "rank-00001.pt", weights_only=True)
    moments = state["optimizer"]["state"]
    assert moments and all({"exp_avg", "exp_avg_sq", "step"} <= s.keys() for s in moments.values())
    assert float(next(iter(moments.values()))["step"]) == 40


def test_safetensors_round_trip(user_run) -> None:
    out, _ = user_run
    tensors, config = load_safetensors(out / "final.safetensors")
    pt = torch.load(out / "final.pt", weights_only=True)
    assert tensors.keys() == pt["state_dict"].keys()
    assert all(torch.equal(tensors[k], pt["state_dict"][k]) for k in tensors)
    assert config == pt["config"] and config["optimizer"] == "adam"


def test_tensorboard_event_files_hold_the_per_particle_scalars(user_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = user_run
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for name in ("fitness", "test_accuracy", "train_accuracy"):
        assert {f"{name}/particle_0", f"{name}/particle_1"} <= tags
    shared = {"swarm/leader", "swarm/spread", "swarm/pressure", "train/learning_rate"}
    per_round = {"round/blocked_seconds", "round/comm_seconds", "round/seconds_blocked"}
    assert shared | per_round | {"round/bytes"} <= tags
    rounds = read_metrics(out / "metrics.jsonl")
    fitness = [r["fitness"][1] for r in rounds if r["type"] == "round"]
    logged = [e.value for e in events.Scalars("fitness/particle_1")]
    assert logged == pytest.approx(fitness)  # the same numbers as metrics.jsonl
    assert [e.step for e in events.Scalars("swarm/leader")] == [10, 20, 30, 40]


def test_simulate_and_compare_take_the_user_pieces(user_run, tmp_path) -> None:
    _, flags = user_run
    own = [f for f in flags if f not in ("--workers", "2", "--loader-workers", "1")]
    sim = nosync("simulate", "--particles", "3", *own, "--out", str(tmp_path / "sim"))
    assert sim.returncode == 0, sim.stderr
    s = summary(tmp_path / "sim")
    assert s["particles"] == 3 and len(s["worker_test_accuracy"]) == 3
    assert (tmp_path / "sim" / "final.safetensors").exists()
    cmp_flags = [f for f in own if f not in SHORT] + ["--steps", "20", "--batch-size", "16"]
    result = nosync(
        "compare", "--strategies", "ddp", "--workers", "2", "--seeds", "1",
        "--evals", "2", "--period", "10", *cmp_flags, "--out", str(tmp_path / "cmp"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cells = json.loads((tmp_path / "cmp" / "compare.json").read_text())["cells"]
    assert set(cells) == {"ddp-n2-s0"}  # a data-parallel particle: the user's GRU inside DDP
    assert all("failed" not in c for c in cells.values())
