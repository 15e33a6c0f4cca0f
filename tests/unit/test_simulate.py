"""``nosync simulate`` against a real multi-process run; compressed exchange."""

from __future__ import annotations

from support.helpers import summary


def test_a_simulated_swarm_that_diverges_says_so_and_exits_3(tmp_path, capsys) -> None:
    from nosync.cli import main

    out = tmp_path / "sim"
    code = main(
        [
            "simulate",
            "--particles",
            "2",
            "--lr",
            "50",
            "--steps",
            "60",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 3 and err.startswith("nosync: training diverged at step ") and err.count("\n") == 1
    )
    assert summary(out)["diverged"]["step"] <= 60 and "--resume" not in err
    assert main(["report", str(out)]) == 0  # the report of a diverged run says so
    assert "training diverged at step" in (out / "report.md").read_text()
