"""``nosync compare`` and ``nosync report``: a tiny grid end to end, interrupted and resumed;
the speedup arithmetic on made-up curves."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from support.helpers import nosync, start_nosync, wait_for

GRID = [
    "--strategies",
    "single,nosync",
    "--workers",
    "2",
    "--seeds",
    "1",
    "--steps",
    "40",
    "--period",
    "10",
    "--evals",
    "4",
    "--quiet",
]


def finished(out: Path) -> list[str]:
    try:
        return list(json.loads((out / "compare.json").read_text())["cells"])
    except (OSError, ValueError):
        return []


def test_compare_writes_table_and_plots_and_resumes_after_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    run = start_nosync("compare", *GRID, "--out", str(out))
    wait_for(lambda: len(finished(out)) >= 1, 180, "the first finished cell")
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "run the same command again" in err
    done = finished(out)
    assert len(done) == 1  # the second cell was under way
    first = out / "cells" / done[0] / "summary.json"
    stamp = first.stat().st_mtime_ns

    again = nosync("compare", *GRID, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert first.stat().st_mtime_ns == stamp  # the finished cell was not run again
    assert sorted(finished(out)) == ["nosync-n2-s0", "single-n1-s0"]
    printed = again.stdout  # a plain table and the files written, not the Markdown
    assert "![" not in printed and "nosync  " in printed and "compare.md" in printed, printed
    table = (out / "compare.md").read_text()
    assert "| nosync | 2 | 1 |" in table and "| single | 1 | 1 |" in table
    for plot in ("accuracy_vs_samples", "accuracy_vs_time", "speedup", "spread", "gap"):
        assert (out / f"{plot}.png").stat().st_size > 1000
    data = json.loads((out / "compare.json").read_text())
    cell = data["cells"]["nosync-n2-s0"]
    assert cell["summary"]["steps"] == 40 and len(cell["curve"]) == 4
    # samples per seed: 40 steps x batch 32, once for single, once per worker of the swarm
    samples = {(r["label"], r["workers"]): r["samples_per_seed"] for r in data["rows"]}
    assert samples == {("single", 1): 40 * 32, ("nosync", 2): 2 * 40 * 32}
    assert "samples/seed (M)" in printed and "| single | 1 | 1 | " in table

    for plot in out.glob("*.png"):
        plot.unlink()
    (out / "compare.md").unlink()
    redrawn = nosync("report", str(out))
    assert redrawn.returncode == 0, redrawn.stderr
    assert (out / "compare.md").exists() and (out / "speedup.png").exists()
    one_run = nosync("report", str(out / "cells" / "nosync-n2-s0"))
    assert one_run.returncode == 0, one_run.stderr
    assert (out / "cells" / "nosync-n2-s0" / "run.png").exists()


def test_compare_interrupted_in_its_first_cell_resumes(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    grid = [*GRID, "--strategies", "nosync", "--steps", "100000"]  # one long cell
    run = start_nosync("compare", *grid, "--out", str(out))
    wait_for(lambda: (out / "cells" / "nosync-n2-s0.log").exists(), 120, "the first cell")
    assert json.loads((out / "compare.json").read_text())["cells"] == {}  # settings first
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    shorter = nosync("compare", *grid, "--out", str(out), "--steps", "40")
    assert shorter.returncode == 2 and "other settings" in shorter.stderr  # the same grid only
    (out / "cells" / "nosync-n2-s0.log").unlink()
    again = start_nosync("compare", *grid, "--out", str(out))  # resumes: no "not empty" refusal
    wait_for(lambda: (out / "cells" / "nosync-n2-s0.log").exists(), 120, "the cell again")
    again.send_signal(signal.SIGINT)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 130 and "holds no comparison" not in err, err


def test_compare_runs_a_grid_with_its_tuned_row_and_resumes_it(tmp_path: Path) -> None:
    """``single:lr=0.01/0.1``: a row per value and a tuned row that reports the better one at
    the price of both; run again, the finished cells are not run again."""
    out = tmp_path / "cmp"
    grid = ["--strategies", "single:lr=0.01/0.1", "--seeds", "1", "--steps", "20", "--evals", "2"]
    grid += ["--quiet", "--out", str(out)]
    run = nosync("compare", *grid)
    assert run.returncode == 0, run.stderr
    rows = json.loads((out / "compare.json").read_text())["rows"]
    values, tuned = rows[:2], rows[2]
    assert [r["label"] for r in values] == ["single:lr=0.01", "single:lr=0.1"]
    best = max(values, key=lambda r: r["test_accuracy"])
    assert tuned["label"] == f"single tuned (lr={best['label'].split('=')[1]})"
    assert tuned["tuned"]["label"] == best["label"]
    assert tuned["test_accuracy"] == best["test_accuracy"]
    assert [r["samples_per_seed"] for r in rows] == [20 * 32, 20 * 32, 2 * 20 * 32]
    assert tuned["label"] in run.stdout
    assert f"| {tuned['label']} | 1 | 1 |" in (out / "compare.md").read_text()
    first = out / "cells" / "single_lr=0.01-n1-s0" / "summary.json"
    stamp = first.stat().st_mtime_ns
    again = nosync("compare", *grid)
    assert again.returncode == 0, again.stderr
    assert first.stat().st_mtime_ns == stamp
