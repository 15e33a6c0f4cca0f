"""``nosync compare`` and ``nosync report``: a tiny grid end to end, interrupted and resumed;
the speedup arithmetic on made-up curves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nosync.errors import DeprecatedSetting, UserError
from nosync.tools.compare import Cell, cell_config, parse_labels, plan
from nosync.tools.report import compare_table, speedups


def test_plan_runs_single_once_per_seed_and_others_per_count() -> None:
    cells = plan(["single", "nosync-pso"], [1, 2, 4], 2)
    assert cells == [
        Cell("single", 1, 0),
        Cell("nosync-pso", 2, 0),
        Cell("nosync-pso", 4, 0),
        Cell("single", 1, 1),
        Cell("nosync-pso", 2, 1),
        Cell("nosync-pso", 4, 1),
    ]
    with pytest.raises(UserError, match="unknown 'nosync-best'"):
        parse_labels("single,nosync-best")
    with pytest.raises(UserError, match="unknown 'ddp-pso'"):
        parse_labels("ddp-pso")


def test_label_settings_take_auto_and_the_old_spellings(tmp_path) -> None:
    labels = parse_labels("diloco:outer_lr=auto,outer_momentum=0.5,nosync:exchange=bfloat16")
    assert labels == ["diloco:outer_lr=auto,outer_momentum=0.5", "nosync:exchange=bfloat16"]
    diloco, swarm = plan(labels, [2], 1)
    assert cell_config({}, diloco, 40, 10, tmp_path / "a")["outer_lr"] == 0.7  # automatic
    with pytest.warns(DeprecatedSetting, match="--exchange is deprecated; use --wire-dtype"):
        config = cell_config({}, swarm, 40, 10, tmp_path / "b")
    assert config["wire_dtype"] == config["exchange"] == "bfloat16"
    with pytest.raises(UserError, match=r"delay must be int \(or auto\), got 'soon'"):
        parse_labels("nosync:delay=soon")


def test_labels_take_settings_of_their_own() -> None:
    labels = parse_labels(
        ",".join(["nosync-weighted:temperature=0.5,outer_momentum=0.9", "localsgd:period=50"])
        + ",diloco,single"
    )
    assert labels == [
        "nosync-weighted:temperature=0.5,outer_momentum=0.9",
        "localsgd:period=50",
        "diloco",
        "single",
    ]
    cells = plan(labels, [1, 2], 1)
    assert [c.name for c in cells] == [
        "nosync-weighted_temperature=0.5_outer_momentum=0.9-n2-s0",
        "localsgd_period=50-n2-s0",
        "diloco-n2-s0",
        "single-n1-s0",
    ]
    config = cell_config({"lr": 0.1, "period": 10}, cells[1], 40, 10, Path("/tmp/x"))
    assert (config["strategy"], config["period"], config["lr"]) == ("localsgd", 50, 0.1)
    config = cell_config({}, cells[0], 40, 10, Path("/tmp/x"))
    assert (config["rule"], config["temperature"], config["outer_momentum"]) == (
        "weighted",
        0.5,
        0.9,
    )
    for bad, message in (
        ("nosync:temperature=hot", "temperature must be float"),
        ("localsgd:workers=3", "compare sets"),
        ("period=5", "follows no LABEL:key=value"),
        ("nosync-median", "unknown 'nosync-median'"),
    ):
        with pytest.raises(UserError, match=message):
            parse_labels(bad)


def _entry(label: str, n: int, seed: int, accs: list[float]) -> dict:
    curve = [
        {
            "step": 10 * (i + 1),
            "samples_per_worker": 320 * (i + 1),
            "train_seconds": 1.0 * (i + 1),
            "selected_test_accuracy": a,
            "selected_train_accuracy": a + 0.01,
            "spread": 0.0,
            "test_accuracy": [a],
        }
        for i, a in enumerate(accs)
    ]
    summary = {
        "test_accuracy": accs[-1],
        "ensemble_test_accuracy": accs[-1],
        "weight_average_test_accuracy": accs[-1],
        "train_seconds": 4.0,
        "train_samples_per_second": 100.0,
        "samples_per_worker": 320 * len(accs),  # 10 steps of batch 32 per evaluation
    }
    return {
        "cell": {"label": label, "workers": n, "seed": seed},
        "summary": summary,
        "curve": curve,
    }


def test_speedup_is_steps_of_one_worker_over_steps_per_worker_of_n() -> None:
    data = {
        "settings": {"target": 0.9, "steps": 40, "strategies": [], "workers": [], "seeds": 2},
        "cells": {
            "a": _entry("single", 1, 0, [0.5, 0.7, 0.8, 0.9]),  # reaches 0.9 at step 40
            "b": _entry("single", 1, 1, [0.5, 0.7, 0.9, 0.95]),  # at step 30
            "c": _entry("nosync", 4, 0, [0.9, 0.9, 0.9, 0.9]),  # at step 10
            "d": _entry("nosync", 4, 1, [0.7, 0.9, 0.9, 0.9]),  # at step 20
            "e": _entry("ddp", 4, 0, [0.5, 0.6, 0.7, 0.8]),  # never
        },
    }
    speed = speedups(data, 0.9)
    assert speed[("single", 1)]["speedup_steps"] == 1.0
    assert speed[("nosync", 4)]["speedup_steps"] == pytest.approx(35 / 15)
    assert speed[("nosync", 4)]["speedup_wall"] == pytest.approx(3.5 / 1.5)
    assert speed[("ddp", 4)]["reached"] == 0 and "speedup_steps" not in speed[("ddp", 4)]
    table = compare_table(data)
    assert "| ddp | 4 | 1 |" in table and "| - | not reached |" in table


def test_speedup_from_fewer_seeds_than_the_cell_has_reads_not_reached() -> None:
    data = {
        "settings": {"target": 0.9, "steps": 40, "strategies": [], "workers": [], "seeds": 3},
        "cells": {
            "a": _entry("single", 1, 0, [0.5, 0.7, 0.8, 0.9]),
            "b": _entry("nosync", 4, 0, [0.9, 0.9, 0.9, 0.9]),  # one seed of three reaches it
            "c": _entry("nosync", 4, 1, [0.5, 0.6, 0.7, 0.8]),
            "d": _entry("nosync", 4, 2, [0.5, 0.6, 0.7, 0.8]),
        },
    }
    row = speedups(data, 0.9)[("nosync", 4)]
    assert row["reached"] == 1 and row["runs"] == 3 and row["steps"] == 10
    assert "speedup_steps" not in row and "speedup_wall" not in row
    table = compare_table(data)
    assert "| nosync | 4 | 3 |" in table and "| 10 (1/3) | not reached |" in table


def test_cells_whose_labels_hold_dots_keep_logs_of_their_own(tmp_path: Path) -> None:
    """``temperature=0.1`` puts dots in a cell's name: its log and config sit beside its folder
    under the whole name, not one ``with_suffix`` would cut at the first dot."""
    from nosync.tools.compare import beside

    cells = [Cell(f"nosync-weighted:temperature=0.1,pressure={p}", 2, 0) for p in ("0.5", "1.0")]
    logs = {beside(tmp_path / c.name, ".log") for c in cells}
    assert len(logs) == 2
    assert {p.name for p in logs} == {f"{c.name}.log" for c in cells}


# ---- issue 17 item 9: one label twice ------------------------------------------------------------
def test_the_same_label_twice_is_refused(tmp_path: Path, capsys) -> None:
    """Given twice, a label ran once but made two rows; now it is refused, also when its
    settings come in another order."""
    from nosync.cli import main

    for text in (
        "nosync,ddp,nosync",
        "localsgd:period=50,localsgd:period=50",
        "nosync-weighted:temperature=0.5,pressure=1.0,nosync-weighted:pressure=1.0,temperature=0.5",
    ):
        with pytest.raises(UserError, match="is given twice"):
            parse_labels(text)
    assert parse_labels("localsgd:period=50,localsgd:period=10") == [
        "localsgd:period=50",
        "localsgd:period=10",
    ]
    out = tmp_path / "cmp"
    assert main(["compare", "--strategies", "single", "nosync", "single", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "nosync: error: strategies: single is given twice\n"
    assert not out.exists()


# ---- issue 17 item 5: shared flags and the cells they do something for ---------------------------
def test_a_shared_flag_is_used_by_the_cells_it_applies_to(tmp_path: Path) -> None:
    """``--delay`` and ``--fitness`` shared by a grid with localsgd: the nosync cell uses them,
    the localsgd cell keeps the defaults (its config.toml says what it ran); a label's own
    setting that does nothing is refused."""
    cells = plan(["nosync", "localsgd"], [2], 1)
    shared = {"delay": 5, "fitness": "held-out"}
    swarm = cell_config(shared, cells[0], 40, 10, tmp_path / "a")
    local = cell_config(shared, cells[1], 40, 10, tmp_path / "b")
    assert (swarm["delay"], swarm["fitness"]) == (5, "held-out")
    assert (local["delay"], local["fitness"]) == (None, "train-loss")
    with pytest.raises(UserError, match="delay: does nothing with --strategy localsgd"):
        cell_config({}, Cell("localsgd:delay=5", 2, 0), 40, 10, tmp_path / "c")


def test_a_shared_flag_no_cell_uses_is_refused(tmp_path: Path, capsys) -> None:
    from nosync.cli import main

    out = tmp_path / "cmp"
    argv = ["compare", "--strategies", "ddp,localsgd", "--workers", "2", "--seeds", "1"]
    argv += ["--steps", "2", "--quiet", "--delay", "5", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nosync: error: delay: no strategy compared uses it (ddp: does nothing")
    assert len(err.strip().splitlines()) == 1 and not out.exists()


# ---- issue 17 item 7: report on files nosync did not write ---------------------------------------
REPORT_CASES = {
    "summary-list": ({"summary.json": "[1, 2]", "metrics.jsonl": ""}, "summary.json is not what"),
    "summary-empty": ({"summary.json": "{}", "metrics.jsonl": ""}, "(no strategy, workers,"),
    "summary-not-json": ({"summary.json": "{", "metrics.jsonl": ""}, "is not valid JSON"),
    "compare-empty": ({"compare.json": "{}"}, "compare.json is not what nosync writes (no"),
    "compare-list": ({"compare.json": "[]"}, "compare.json is not what nosync writes (a JSON"),
    "compare-bad-cell": (
        {"compare.json": json.dumps({"settings": {}, "cells": {"x": {"cell": {}}}})},
        "compare.json is not what nosync writes (KeyError: 'label')",
    ),
}


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_report_of_a_file_nosync_did_not_write_is_one_line(tmp_path: Path, case, capsys) -> None:
    from nosync.cli import main

    files, message = REPORT_CASES[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"nosync: error: report: {tmp_path}/") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # nothing written


def test_explore_baselines_are_labels_and_explore_reaches_only_the_swarm(tmp_path: Path) -> None:
    """``pbt`` (no pull, Ray's factors) and ``sweep`` (no copies) take the shared --explore;
    a localsgd cell of the same grid trains without it; a baseline without it is refused."""
    assert parse_labels("pbt,sweep,nosync-weighted,localsgd:lr=0.0158") == [
        "pbt", "sweep", "nosync-weighted", "localsgd:lr=0.0158",
    ]  # fmt: skip
    shared = {"explore": "lr=0.005..0.5:log"}
    cells = plan(["pbt", "sweep", "nosync-weighted", "localsgd"], [4], 1)
    pbt, sweep, swarm, local = (cell_config(shared, c, 40, 10, tmp_path / c.name) for c in cells)
    assert (pbt["rule"], pbt["explore_factors"], pbt["explore"]) == (
        "none",
        "0.8,1.2",
        shared["explore"],
    )
    assert (sweep["rule"], sweep["exploit_every"]) == ("none", 0)
    assert (swarm["rule"], swarm["explore"]) == ("weighted", shared["explore"])
    assert (local["strategy"], local["explore"]) == ("localsgd", "")
    from nosync.tools.compare import _check_labels

    with pytest.raises(UserError, match="pbt needs --explore"):
        _check_labels({}, ["pbt"], tmp_path)


# ---- issue 19 item 5: compute per row, and a tuned row from a grid -------------------------------
def test_a_grid_of_values_expands_into_one_label_per_value() -> None:
    """``lr=0.005/0.05`` is one label per value (in place among the label's other settings) and a
    grid that names them; a text setting keeps its ``/`` (a path); the presets take grids too."""
    from nosync.tools.compare import Grid, parse_strategies

    labels, grids = parse_strategies("single,localsgd:period=5,lr=5e-3/0.05/0.5,weight_decay=0")
    members = [f"localsgd:period=5,lr={v},weight_decay=0.0" for v in ("0.005", "0.05", "0.5")]
    assert labels == ["single", *members]
    assert grids == [
        Grid(
            label="localsgd:period=5,lr=0.005/0.05/0.5,weight_decay=0.0",
            key="lr",
            values=("0.005", "0.05", "0.5"),
            labels=tuple(members),
            base="localsgd:period=5,weight_decay=0.0",
        )
    ]
    cells = plan(labels, [2, 4], 1)
    assert [c.label for c in cells] == ["single", *[m for m in members for _ in (2, 4)]]
    lrs = [cell_config({"lr": 1.0}, c, 40, 10, Path("/tmp/x"))["lr"] for c in cells[1::2]]
    assert lrs == [0.005, 0.05, 0.5]
    labels, grids = parse_strategies("sweep:period=5/10,nosync:delay=auto/3")
    assert labels == ["sweep:period=5", "sweep:period=10", "nosync:delay=auto", "nosync:delay=3"]
    assert [(g.key, g.values, g.base) for g in grids] == [
        ("period", ("5", "10"), "sweep"),
        ("delay", ("auto", "3"), "nosync"),
    ]
    assert parse_strategies("localsgd:data_dir=/data/x")[1] == []  # a path, not a grid


GRID_ERRORS = {
    "localsgd:lr=0.01/0.1,period=5/10": "localsgd: values for both lr and period; a label "
    "takes values (/) for one key only",
    "localsgd:lr=0.01/": "localsgd: lr=0.01/ has an empty value",
    "localsgd:lr=/": "localsgd: lr=/ has an empty value",
    "localsgd:lr=0.01/fast": "localsgd: lr=0.01/fast: 'fast' is not a number",
    "localsgd:lr=0.01/nan": "'nan' is not a number",
    "nosync:shard=true/false": "'true' is not a number",
    "localsgd:period=5/7.5": "period must be int, got '7.5'",
    "localsgd:lr=0.1/0.1": "localsgd:lr=0.1 is given twice",
}


@pytest.mark.parametrize("text", list(GRID_ERRORS))
def test_a_grid_that_does_not_parse_is_one_line_and_exit_2(
    text: str, tmp_path: Path, capsys
) -> None:
    from nosync.cli import main

    with pytest.raises(UserError, match=re.escape(GRID_ERRORS[text])):
        parse_labels(text)
    out = tmp_path / "cmp"
    assert main(["compare", "--strategies", text, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nosync: error: strategies: ") and len(err.splitlines()) == 1, err
    assert not out.exists()


def _grid_comparison(lr_accs: dict[str, dict[int, list[float]]]) -> dict:
    """compare.json of ``single`` and ``localsgd:lr=A/B/C`` at N = 2 and 4: ``lr_accs`` gives
    each value's final test accuracy per worker count, one per seed."""
    from nosync.tools.compare import parse_strategies

    labels, grids = parse_strategies("single,localsgd:lr=" + "/".join(lr_accs))
    cells = {"single-n1-s0": _entry("single", 1, 0, [0.5, 0.7, 0.8, 0.9])}
    for label, accs in zip(labels[1:], lr_accs.values(), strict=True):
        for n, finals in accs.items():
            for seed, acc in enumerate(finals):
                cell = Cell(label, n, seed)
                cells[cell.name] = _entry(label, n, seed, [acc - 0.1, acc - 0.05, acc, acc])
    settings = {"target": 0.8, "steps": 40, "strategies": labels, "workers": [2, 4], "seeds": 2}
    settings["grids"] = [g.to_dict() for g in grids]
    return {"settings": {**settings, "train": {}}, "cells": cells}


def test_a_tuned_row_reports_the_best_value_at_the_price_of_the_whole_grid(
    tmp_path: Path,
) -> None:
    """The best mean over seeds wins, per worker count (lr=0.05 at N = 2, lr=0.5 at N = 4);
    its samples are the three values' together; it follows its values in the table, the
    printed table and compare.json's rows."""
    from nosync.tools.compare import _write_index, printed_summary
    from nosync.tools.report import table_rows

    data = _grid_comparison({
        "0.005": {2: [0.80, 0.80], 4: [0.80, 0.80]},
        "0.05": {2: [0.95, 0.85], 4: [0.86, 0.86]},  # N = 2: mean 0.90, its best seed 0.95
        "0.5": {2: [0.89, 0.89], 4: [0.91, 0.87]},  # N = 4: mean 0.89
    })  # fmt: skip
    rows = table_rows(data)
    assert [(r.label, r.workers) for r in rows] == [
        ("single", 1),
        ("localsgd:lr=0.005", 2),
        ("localsgd:lr=0.005", 4),
        ("localsgd:lr=0.05", 2),
        ("localsgd:lr=0.05", 4),
        ("localsgd:lr=0.5", 2),
        ("localsgd:lr=0.5", 4),
        ("localsgd tuned (lr=0.05)", 2),
        ("localsgd tuned (lr=0.5)", 4),
    ]
    # a run: N workers x 40 steps x batch 32; the tuned row: the grid's three values' runs
    assert [r.samples for r in rows] == [1280, *[2560, 5120] * 3, 3 * 2560, 3 * 5120]
    tuned2, tuned4 = rows[7], rows[8]
    assert tuned2.entries == rows[3].entries and tuned4.entries == rows[6].entries
    assert tuned4.tuned == {
        "key": "lr",
        "value": "0.5",
        "label": "localsgd:lr=0.5",
        "of": ["localsgd:lr=0.005", "localsgd:lr=0.05", "localsgd:lr=0.5"],
    }

    table = compare_table(data)
    assert "| localsgd tuned (lr=0.05) | 2 | 2 | 90.00 ± 7.07 | 0.00768 |" in table
    assert "| localsgd tuned (lr=0.5) | 4 | 2 | 89.00 ± 2.83 | 0.0154 |" in table
    assert "| single | 1 | 1 | 90.00 | 0.00128 |" in table
    assert "a tuned row counts every value of its grid" in table

    _write_index(tmp_path, data)
    written = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert written[7] == {
        "label": "localsgd tuned (lr=0.05)",
        "workers": 2,
        "seeds": 2,
        "test_accuracy": pytest.approx(0.90),
        "samples_per_seed": 7680,
        "tuned": {
            "key": "lr",
            "value": "0.05",
            "label": "localsgd:lr=0.05",
            "of": ["localsgd:lr=0.005", "localsgd:lr=0.05", "localsgd:lr=0.5"],
        },
    }
    assert written[0] == {
        "label": "single",
        "workers": 1,
        "seeds": 1,
        "test_accuracy": 0.9,
        "samples_per_seed": 1280,
    }
    printed = printed_summary(tmp_path).splitlines()
    row = next(line for line in printed if line.startswith("localsgd tuned (lr=0.5)"))
    assert row.split()[3:7] == ["4", "2", "89.00", "±"] and row.split()[8] == "0.0154"


def test_a_tuned_row_waits_for_every_value_of_its_grid() -> None:
    """Until each value has a finished run at a worker count, no tuned row there: the best of
    the values run so far would flatter it and count too few samples."""
    from nosync.tools.report import table_rows

    data = _grid_comparison({"0.1": {2: [0.9]}, "0.01": {2: [0.8], 4: [0.8]}})
    assert [(r.label, r.workers) for r in table_rows(data)] == [
        ("single", 1),
        ("localsgd:lr=0.1", 2),  # the grid's order, not the text's
        ("localsgd:lr=0.01", 2),
        ("localsgd:lr=0.01", 4),
        ("localsgd tuned (lr=0.1)", 2),
    ]


def test_a_comparison_with_a_grid_resumes_into_its_folder(tmp_path: Path) -> None:
    """The grid is part of compare.json's settings (as JSON lists): the same command again
    opens the same comparison; another grid is another comparison."""
    from nosync.tools.compare import _open_index, parse_strategies

    def settings(text: str) -> dict:
        labels, grids = parse_strategies(text)
        return {"strategies": labels, "grids": [g.to_dict() for g in grids], "train": {}}

    first = _open_index(tmp_path, settings("localsgd:lr=0.01/0.1"))
    first["cells"]["x"] = {"done": True}
    (tmp_path / "compare.json").write_text(json.dumps(first))
    assert _open_index(tmp_path, settings("localsgd:lr=0.01/0.1"))["cells"] == {"x": {"done": True}}
    with pytest.raises(UserError, match="holds a comparison with other settings"):
        _open_index(tmp_path, settings("localsgd:lr=0.01/0.2"))


def test_samples_per_seed_count_every_worker_of_a_run(tmp_path: Path) -> None:
    """A run's samples are steps x batch x workers: one worker of single, and each of the four
    particles of an --explore swarm (``sweep``) counts; summaries as ``collect`` keeps them."""
    from nosync.tools.compare import collect
    from nosync.tools.report import table_rows

    cells = {}
    for cell, per_worker in ((Cell("single", 1, 0), 40 * 16), (Cell("sweep", 4, 0), 40 * 16)):
        folder = tmp_path / cell.name
        folder.mkdir()
        summary = {"test_accuracy": 0.9, "steps": 40, "samples_per_worker": per_worker}
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "metrics.jsonl").write_text("")
        cells[cell.name] = {"cell": cell.__dict__, **collect(folder)}
    settings = {"steps": 40, "strategies": ["single", "sweep"], "workers": [4], "seeds": 1}
    rows = table_rows({"settings": settings, "cells": cells})
    assert {r.label: r.samples for r in rows} == {"single": 640, "sweep": 4 * 640}
