"""End to end: the real ``nosync train`` on real ranks, and the example script under torchrun."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from nosync.run.metrics import SUMMARY_KEYS, read_metrics

from support.helpers import ROOT, nosync, summary, torchrun_script


def test_default_swarm_on_digits_reaches_095(default_swarm) -> None:
    out, result = default_swarm
    s = summary(out)
    assert s["strategy"] == "nosync" and s["rule"] == "leader"
    assert s["workers"] == 4 and s["particles"] == 4
    assert s["test_accuracy"] >= 0.95
    assert len(s["worker_test_accuracy"]) == 4
    assert s["sync_rounds"] >= s["epochs"] >= 1  # at least one sync round per epoch
    assert len(s["leaders"]) == s["sync_rounds"] and s["comm_bytes"] > 0
    assert s["test_accuracy"] == pytest.approx(s["worker_test_accuracy"][s["best_particle"]])
    assert "selected model" in result.stdout and "ensemble" in result.stdout  # the printed table
    assert "fitness: mean training loss over the final steps, lower is better" in result.stdout
    assert result.stdout.strip().endswith(
        f"next: nosync report {out}  (plots and a Markdown report of the run)"
    )


def test_every_output_file_is_written(default_swarm) -> None:
    out, _ = default_swarm
    for name in ("config.toml", "metrics.jsonl", "summary.json", "final.pt"):
        assert (out / name).is_file(), name
    assert set(SUMMARY_KEYS) <= set(summary(out))
    records = read_metrics(out / "metrics.jsonl")
    rounds = [r for r in records if r["type"] == "round"]
    evals = [r for r in records if r["type"] == "eval"]
    assert len(rounds) == summary(out)["sync_rounds"]
    assert {
        "step",
        "fitness",
        "leader",
        "distance",
        "pressure",
        "comm_seconds",
        "comm_bytes",
    } <= set(rounds[0])
    assert len(rounds[0]["fitness"]) == 4 and len(rounds[0]["distance"]) == 4
    # every round's distances arrived (with the next round's fitness; the last with finalize's)
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    assert all(d is not None for r in rounds for d in r["distance"])
    assert len(evals) >= summary(out)["epochs"] and len(evals[-1]["test_accuracy"]) == 4
    final = torch.load(out / "final.pt", weights_only=False)
    assert final["config"]["workers"] == 4 and final["state_dict"]
    assert 'strategy = "nosync"' in (out / "config.toml").read_text()


def _records(out: Path, kind: str) -> list[dict]:
    return [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == kind]


def _last_checkpoint(out: Path, rank: int = 0, previous: bool = False) -> dict:
    sets = sorted((out / "checkpoints").glob("step-*"))
    folder = sets[-2] if previous else sets[-1]
    return torch.load(folder / f"rank-{rank:05d}.pt", weights_only=False)


def _flat(state_dict: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.flatten().float() for v in state_dict.values()])


def _check_ddp(out: Path, s: dict) -> None:
    """ddp all-reduces every parameter's gradient once per step: steps x parameter bytes."""
    weights = torch.load(out / "final.pt", weights_only=False)["state_dict"]
    parameter_bytes = sum(v.numel() * v.element_size() for v in weights.values())
    assert s["comm_bytes"] == s["steps"] * parameter_bytes
    assert s["sync_rounds"] == 0 and s["selected"] == "the model"


def _check_hybrid(out: Path, s: dict) -> None:
    """Two particles of two ranks: lr x2 (linear scaling), cosine decay after the warm-up."""
    state = _last_checkpoint(out, previous=True)  # step 40 (the sets of 40 and 60 are kept)
    group = state["optimizer"]["param_groups"][0]
    assert state["step"] == 40 and group["initial_lr"] == pytest.approx(2 * 0.05)
    assert state["scheduler"]["base_lrs"] == [pytest.approx(0.1)]
    cosine = 0.5 * (1 + math.cos(math.pi * 40 / 60))
    assert group["lr"] == pytest.approx(0.1 * cosine)  # the 3-step warm-up is over


def _check_different_init(out: Path, s: dict) -> None:
    first = _records(out, "eval")[0]
    assert first["step"] == 10 and first["spread"] > 0  # before any sync round
    same = _records(out, "round")[0]
    assert same["pressure"] == pytest.approx(0.3)


def _check_linear_schedule(out: Path, s: dict) -> None:
    pressures = [r["pressure"] for r in _records(out, "round")]
    assert pressures[0] < pressures[-1] == pytest.approx(1.0)
    assert pressures == sorted(pressures)


def _check_localsgd(out: Path, s: dict) -> None:
    assert s["selected"] == "the average of the workers"
    assert len(set(s["worker_test_accuracy"])) == 1  # every worker ends with the average


def _check_easgd(out: Path, s: dict) -> None:
    """The run ends with EASGD's centre variable, the one saved with the last round."""
    centre = _last_checkpoint(out)["strategy"]["swarm"]["rule"]["center"]
    final = torch.load(out / "final.pt", weights_only=False)["state_dict"]
    assert s["selected"] == "the centre variable"
    assert torch.allclose(_flat(final), centre.float())


def _check_weighted_soup(out: Path, s: dict) -> None:
    """Hybrid cnn particles, weighted rule with outer momentum, the soup (BatchNorm recomputed)."""
    _check_hybrid(out, s)
    velocity = _last_checkpoint(out)["strategy"]["swarm"]["rule"]["velocity"]
    assert velocity is not None and bool(velocity.abs().sum() > 0)
    assert s["select"] == "soup" and s["selected_ingredients"] == s["soup_ingredients"]
    assert s["test_accuracy"] == pytest.approx(s["soup_test_accuracy"])
    assert _records(out, "round")[0]["target"] == "weighted mean"


def _check_average_diversity(out: Path, s: dict) -> None:
    _check_linear_schedule(out, s)
    smoothing = s["label_smoothing"]
    assert len(set(smoothing)) == 2 and all(0 <= x <= 0.1 for x in smoothing)
    assert s["selected_ingredients"] == [0, 1] and s["select"] == "average"
    assert s["test_accuracy"] == pytest.approx(s["weight_average_test_accuracy"])


def _check_diloco(out: Path, s: dict) -> None:
    state = _last_checkpoint(out)["strategy"]
    assert state["outer"]["param_groups"][0]["lr"] == 0.7
    assert state["outer"]["param_groups"][0]["momentum"] == 0.9
    assert s["selected"] == "the anchor after the last outer step"
    assert len(set(s["worker_test_accuracy"])) == 1  # step 60 was a round: all on the anchor


@pytest.mark.parametrize(
    ("flags", "particles", "check"),
    [
        (["--strategy", "single"], 1, None),
        (["--strategy", "ddp", "--workers", "2"], 1, _check_ddp),
        (
            ["--workers", "4", "--ranks-per-particle", "2", "--model", "cnn"]
            + ["--checkpoint-every", "1", "--rule", "weighted", "--outer-momentum", "0.5"]
            + ["--select", "soup", "--fitness", "held-out", "--init", "different"],
            2,
            _check_weighted_soup,
        ),
        (
            ["--workers", "2", "--rule", "pso", "--init", "different", "--shard"]
            + ["--eval-every", "10"],
            2,
            _check_different_init,
        ),
        (
            ["--workers", "2", "--rule", "elastic", "--schedule", "linear"]
            + ["--select", "average", "--diversity"],
            2,
            _check_average_diversity,
        ),
        (["--strategy", "localsgd", "--workers", "2"], 2, _check_localsgd),
        (["--strategy", "easgd", "--workers", "3"], 3, _check_easgd),
        (["--strategy", "diloco", "--workers", "2"], 2, _check_diloco),
    ],
)
def test_strategies_and_options_train(
    tmp_path: Path, flags: list[str], particles: int, check
) -> None:
    out = tmp_path / "run"
    result = nosync(
        "train",
        *flags,
        *("--steps", "60", "--period", "20", "--quiet", "--out", str(out)),
    )
    assert result.returncode == 0, result.stderr
    s = summary(out)
    assert s["particles"] == particles and s["steps"] == 60
    assert s["test_accuracy"] > 0.5
    if s["strategy"] in ("nosync", "localsgd", "easgd", "diloco"):
        assert s["sync_rounds"] == 3
    if check:
        check(out, s)


def test_toml_config_flags_override_and_print_config(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('workers = 3\npressure = 0.4\nmodel = "cnn"\n')
    result = nosync("train", "--config", str(config), "--pressure", "0.2", "--print-config")
    assert result.returncode == 0, result.stderr
    assert "workers = 3" in result.stdout and "pressure = 0.2" in result.stdout
    assert 'model = "cnn"' in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [  # the parser's refusal and the config's; tests/unit/test_bad_input.py has the whole table
        (["--rule", "best"], "invalid choice"),
        (["--config", "/nonexistent.toml"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    """Seen from outside: the exit status and stderr of the process."""
    result = nosync("train", *args, "--print-config")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_example_script_under_torchrun_trains_and_finalizes() -> None:
    result = torchrun_script(ROOT / "examples" / "swarm_torchrun.py", 3, "--epochs", "6")
    assert result.returncode == 0, result.stderr
    assert "identical" not in result.stderr  # each rank has its own data order (test_examples)
    # Ranks share one stdout pipe, so lines may interleave: match the number only.
    found = re.findall(r"checksum (-?\d\.\d+e[+-]\d+)", result.stdout)
    assert len(found) == 3, result.stdout
    assert len(set(found)) == 1  # every rank holds the same (best) particle
    accuracy = float(re.search(r"test accuracy (\S+)", result.stdout).group(1))
    assert accuracy > 0.9 and "sync rounds" in result.stdout


def test_ensemble_and_weight_average_accuracies_are_computed_from_the_particles(
    default_swarm,
) -> None:
    """Recompute both from the particles saved at the last step (before the final selection)."""
    from nosync.core.evaluate import accuracy, accuracy_of, predict_proba
    from nosync.data.datasets import load_dataset
    from nosync.run.models import build_model

    out, _ = default_swarm
    s = summary(out)
    data = load_dataset("digits")
    models = []
    for rank in range(4):
        state = torch.load(
            out / "checkpoints" / f"step-{s['steps']:09d}" / f"rank-{rank:05d}.pt",
            weights_only=False,
        )
        model = build_model("mlp", data.input_shape, data.classes, 0)
        model.load_state_dict(state["model"])
        models.append(model)
    probs = torch.stack([predict_proba(m, data.x_test) for m in models])
    assert s["worker_test_accuracy"] == pytest.approx([accuracy_of(p, data.y_test) for p in probs])
    assert s["ensemble_test_accuracy"] == pytest.approx(accuracy_of(probs.mean(0), data.y_test))
    average = build_model("mlp", data.input_shape, data.classes, 0)
    average.load_state_dict(
        {
            k: torch.stack([m.state_dict()[k] for m in models]).mean(0)
            for k in models[0].state_dict()
        }
    )
    assert s["weight_average_test_accuracy"] == pytest.approx(
        accuracy(average, data.x_test, data.y_test)
    )


def test_report_of_a_run_states_its_results(default_swarm) -> None:
    out, _ = default_swarm
    (out / "report.md").unlink(missing_ok=True)
    result = nosync("report", str(out))
    assert result.returncode == 0, result.stderr
    text = (out / "report.md").read_text()
    s = summary(out)
    assert text.startswith(f"# nosync run: {out.name}")
    assert f"{100 * s['test_accuracy']:.2f} % test accuracy" in text
    assert f"ensemble of particles:     {100 * s['ensemble_test_accuracy']:.2f} %" in text
    led = dict(
        item.split(": ")
        for item in text.split("Rounds led per particle: ")[1].split("\n")[0].split(", ")
    )
    assert sum(map(int, led.values())) == s["sync_rounds"]
    assert {int(p) for p in led} == {p for p in s["leaders"] if p is not None}
    assert (out / "run.png").stat().st_size > 1000


def test_half_precision_exchanges_send_two_bytes_a_weight_and_still_train(tmp_path: Path) -> None:
    rounds = {}
    for dtype in ("float32", "float16", "bfloat16"):
        out = tmp_path / dtype
        flags = ["--workers", "2", "--steps", "100", "--period", "10", "--quiet"]
        result = nosync("train", *flags, "--wire-dtype", dtype, "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert "nosync report" not in result.stdout  # --quiet: no hint
        assert summary(out)["test_accuracy"] > 0.9
        rounds[dtype] = [
            r["comm_bytes"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "round"
        ]
    weights = torch.load(tmp_path / "float32" / "final.pt", weights_only=False)["state_dict"]
    parameters = sum(v.numel() for v in weights.values())
    for half in ("float16", "bfloat16"):  # every round's weights travel at 2 bytes, not 4
        saved = [a - b for a, b in zip(rounds["float32"], rounds[half], strict=True)]
        assert saved == [2 * parameters] * 10


def test_repeated_inject_flags_add_up() -> None:
    result = nosync(
        "train", "--workers", "2", "--inject", "nan@5:0", "--inject", "nan@9:1", "--print-config"
    )
    assert result.returncode == 0, result.stderr
    assert 'inject = "nan@5:0,nan@9:1"' in result.stdout
