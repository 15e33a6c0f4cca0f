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
