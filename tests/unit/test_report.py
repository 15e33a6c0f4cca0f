"""What people read of a run and a comparison: the table's legend, the run's plots (the fitness
named as the run measured it, points that show when there are few), one colour per strategy in
every plot of a comparison, and what ``nosync compare`` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nosync.tools import compare, report

from .test_compare import _entry

SUMMARY = {
    "strategy": "nosync",
    "rule": "leader",
    "workers": 2,
    "particles": 2,
    "steps": 20,
    "epochs": 0.5,
    "wall_seconds": 1.0,
    "test_accuracy": 0.73,
    "worker_test_accuracy": [0.73, 0.64],
    "final_fitness": [1.82, 1.84],
    "best_particle": 0,
    "selected": "particle 0 (best fitness)",
    "sync_rounds": 2,
    "comm_seconds": 0.1,
    "comm_bytes": 4000,
    "train_samples_per_second": 100.0,
    "leaders": [0, 0],
}


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The figures the reports draw, by file name, instead of PNG files."""
    import matplotlib.pyplot as plt

    drawn: dict[str, Any] = {}

    def keep(fig: Any, path: Path) -> None:
        drawn[path.name] = fig
        path.write_bytes(b"png")

    monkeypatch.setattr(report, "_save", keep)
    yield drawn
    plt.close("all")


def _run_folder(tmp: Path, fitness: str | None, evals: int, rounds: int) -> Path:
    records = [
        {
            "type": "eval",
            "step": 20 * (i + 1),
            "test_accuracy": [0.7, 0.6],
            "selected_test_accuracy": 0.7,
            "spread": 0.3,
        }
        for i in range(evals)
    ]
    records += [
        {"type": "round", "round": i + 1, "step": 10 * (i + 1), "fitness": [2.0, 2.1]}
        for i in range(rounds)
    ]
    (tmp / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp / "summary.json").write_text(json.dumps(SUMMARY))
    if fitness is not None:
        (tmp / "config.toml").write_text(f'strategy = "nosync"\nfitness = "{fitness}"\n')
    return tmp


def test_the_tables_legend_names_the_runs_fitness() -> None:
    trained = report.format_summary(SUMMARY, "runs/x", "train-loss")
    assert "* the selected particle; fitness: mean training loss over the final steps" in trained
    assert "lower is better" in trained and "progress bar" in trained
    held_out = report.format_summary(SUMMARY, "runs/x", "held-out")
    assert "fitness: loss on the held-out fitness set at the end" in held_out
    single = {**SUMMARY, "particles": 1, "final_fitness": None, "worker_test_accuracy": [0.7]}
    assert "fitness:" not in report.format_summary(single, "runs/x", "train-loss")


@pytest.mark.parametrize(
    ("fitness", "label"),
    [
        ("train-loss", "fitness (training loss)"),
        ("held-out", "fitness (held-out loss)"),
        (None, "fitness (lower is better)"),  # no config.toml: a run nosync did not name
    ],
)
def test_run_plot_names_the_fitness_the_run_used(
    tmp_path: Path, figures: dict[str, Any], fitness: str | None, label: str
) -> None:
    report.write_run_report(_run_folder(tmp_path, fitness, evals=5, rounds=4))
    axes = figures["run.png"].axes
    assert axes[1].get_ylabel() == label
    assert all(line.get_marker() in ("None", None, "") for line in axes[0].lines)  # many: lines
    if fitness:
        assert f"fitness: {report.FITNESS_LEGEND[fitness]}" in (tmp_path / "report.md").read_text()


def test_a_run_of_one_evaluation_draws_its_points(tmp_path: Path, figures: dict[str, Any]) -> None:
    report.write_run_report(_run_folder(tmp_path, "train-loss", evals=1, rounds=0))
    accuracy, rounds, spread = figures["run.png"].axes
    for ax in (accuracy, spread):
        assert ax.lines and all(line.get_marker() == "o" for line in ax.lines)
    assert [t.get_text() for t in rounds.texts] == ["no sync rounds"]


def _comparison() -> dict[str, Any]:
    cells = {
        "a": _entry("single", 1, 0, [0.5, 0.7, 0.8, 0.9]),
        "b": _entry("nosync", 2, 0, [0.6, 0.8, 0.9, 0.9]),
        "c": _entry("nosync", 4, 0, [0.7, 0.9, 0.9, 0.9]),
        "d": _entry("localsgd", 4, 0, [0.7, 0.8, 0.9, 0.95]),
        "e": _entry("ddp", 2, 0, [0.5, 0.6, 0.7, 0.8]),
    }
    settings = {"target": 0.9, "steps": 40, "strategies": [], "workers": [2, 4], "seeds": 1}
    return {"settings": {**settings, "train": {}}, "cells": cells}


def test_every_plot_of_a_comparison_keeps_one_colour_per_strategy(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    report.compare_plots(_comparison(), tmp_path)
    assert set(figures) == {name for name, _, _ in report.CURVE_PLOTS} | {"speedup.png"}
    seen: dict[str, set[str]] = {}
    for fig in figures.values():
        for ax in fig.axes:
            for line in ax.lines:
                strategy = line.get_label().split(" (N=")[0]
                if strategy != "linear":
                    seen.setdefault(strategy, set()).add(str(line.get_color()))
    assert set(seen) == {"single", "nosync", "localsgd", "ddp"}
    assert all(len(c) == 1 for c in seen.values()), seen  # one colour each, everywhere
    assert len({c for cs in seen.values() for c in cs}) == 4  # and four different ones


def test_compare_prints_a_plain_table_and_the_files_it_wrote(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    (tmp_path / "compare.json").write_text(json.dumps(_comparison()))
    report.write_compare_report(tmp_path)
    assert "the default training settings" in (tmp_path / "compare.md").read_text()
    printed = compare.printed_summary(tmp_path)
    lines = printed.splitlines()
    assert "![" not in printed and "|" not in printed and "{}" not in printed
    header = next(line for line in lines if line.startswith("strategy"))
    assert header.split()[:4] == ["strategy", "N", "seeds", "test"] and "S(N) steps" in header
    row = next(line for line in lines if line.startswith("nosync ") and " 4 " in line)
    # the target 0.9: single reaches it at step 40, nosync at N = 4 at step 20
    # 4 workers x 40 steps x batch 32 = 5120 samples, 0.00512 million
    assert row.split() == ["nosync", "4", "1", "90.00", "0.00512", "20", "(1/1)", "2.00", "4.0"]
    assert "ddp" in printed and "not reached" in printed
    files = next(line for line in lines if line.startswith("wrote in"))
    for name in ("compare.md", "compare.json", "speedup.png", "accuracy_vs_samples.png"):
        assert name in files
    assert f"nosync report {tmp_path}" in printed


def test_shared_training_settings_read_as_settings() -> None:
    assert report.shared_settings({}) == "the default training settings"
    assert report.shared_settings({"lr": 0.1, "dataset": "digits"}) == (
        'training settings lr = 0.1, dataset = "digits"'
    )


def test_every_panel_of_a_comparison_has_its_legend(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    report.compare_plots(_comparison(), tmp_path)
    for name, _, _ in report.CURVE_PLOTS:
        for ax in figures[name].axes:
            shown = {t.get_text() for t in ax.get_legend().get_texts()}
            assert shown == {line.get_label() for line in ax.lines}
