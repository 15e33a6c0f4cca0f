"""Bad input: one clear line on stderr, exit status 2, no traceback, nothing written.

The table drives the real command line entry point (``nosync.cli.main``) in this process; the
checks it reaches all run in the launcher before any worker starts.  ``test_train_cli`` runs a
few of the same through a subprocess to see the exit status from outside.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from nosync.cli import main

from support.helpers import tiny_image_dataset
from support.helpers import write_npz as npz


def corrupt_idx(folder: Path) -> Path:
    tiny_image_dataset(folder)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x07\x07\x07\x07junk")
    return folder


# (flags, expected fragment of the one line); {tmp} is a fresh folder per case
CASES = [
    (["--dataset", "cifar10"], "dataset: unknown dataset 'cifar10'"),
    (["--strategy", "async"], "argument --strategy: invalid choice: 'async'"),
    (["--rule", "best"], "argument --rule: invalid choice: 'best'"),
    (["--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
    (["--dataset", "mnist", "--data-dir", "{tmp}/empty"], "dataset: mnist IDX files not found"),
    (["--dataset", "mnist", "--data-dir", "{corrupt_idx}"], "is not an IDX file (bad header)"),
    (["--dataset", "npz:{npz_missing}"], "lacks the arrays y_test"),
    (["--dataset", "npz:{npz_mismatched}"], "x_train (30, 8, 8) and y_train (5,) do not match"),
    (["--dataset", "npz:{tmp}/none.npz"], "dataset: cannot read"),
    (["--workers", "0"], "workers: must be at least 1"),
    (
        ["--workers", "3", "--ranks-per-particle", "2"],
        "ranks_per_particle: 2 must be >= 1 and divide",
    ),
    (["--pressure", "1.5"], "pressure: must be in [0, 1], got 1.5"),
    (["--pressure", "-0.1"], "pressure: must be in [0, 1]"),
    (["--period", "0"], "period: invalid value 0"),
    (["--steps", "-3"], "steps: invalid value -3"),
    (["--workers", "two"], "argument --workers: invalid int value: 'two'"),
    (["--out", "{a_file}/run"], "out: cannot write to"),
    (["--config", "{toml_syntax}"], "is not valid TOML"),
    (["--config", "{toml_unknown}"], "config: unknown key 'learning_rate'"),
    (["--config", "{toml_type}"], "workers must be int, got 'four'"),
    (["--port", "{busy_port}"], "is already in use"),
    (["--inject", "nan@x:1"], "inject: 'nan@x:1' is not of the form nan@STEP:RANK"),
    (["--resume", "{tmp}/nothing"], "holds no nosync run"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    # --explore (population based training)
    (["--explore", "dropout=0..0.5"], "explore: unknown hyperparameter 'dropout'"),
    (["--explore", "lr=0.5..0.005"], "explore: lr=0.5..0.005 has LOW > HIGH"),
    (["--explore", "lr=0..0.5:log"], "explore: lr=...:log needs LOW > 0, got 0.0"),
    (["--explore", "lr=0.01..0.5", "--exploit-quantile", "0.75"], "quantile must be in (0, 0.5]"),
    (["--explore", "lr=0.01..0.5", "--strategy", "localsgd"], "explore: does nothing with --str"),
    (["--explore", "lr=0.01..0.5", "--strategy", "single"], "explore: does nothing with --stra"),
    (["--explore", "beta1=0.8..0.95"], "explore: beta1 needs --optimizer adam or adamw"),
    (["--exploit-every", "3"], "exploit_every: does nothing with no --explore"),
    (["--explore", "lr=0.01..0.5", "--rule", "elastic"], "explore: --rule elastic pulls every"),
    # more than the data holds: refused in preflight, not in the workers
    (["--batch-size", "2000"], "batch_size: 2000 x 1 rank(s) exceeds the"),
    (["--fitness-size", "5000"], "fitness_size: 5000 does not leave training data"),
    (["--dataset", "npz:{npz_big}", "--batch-size", "40"], "batch_size: 40 x 1 rank(s) exceeds"),
    (["--workers", "2", "--inject", "nan@5:99"], "inject: rank 99 does not exist (ranks are 0..1)"),
    (["--inject", "nan@5:0", "--inject", "nan@5:0"], "inject: 'nan@5:0' is given twice"),
    (["--config", "{toml_latin1}"], "is not UTF-8 text"),
    (["--config", "{toml_inf}"], "timeout: must be a finite number, got inf"),
    (["--config", "{toml_nan}"], "timeout: must be a finite number, got nan"),
    (["--c1", "inf"], "c1: must be a finite number, got inf"),
    (["--rule", "weighted", "--temperature", "0"], "temperature: must be > 0, got 0.0"),
    (["--temperature", "-1"], "temperature: must be > 0, got -1.0"),
    (["--outer-momentum", "1"], "outer_momentum: must be in [0, 1), got 1.0"),
    (["--strategy", "diloco", "--outer-momentum", "-0.5"], "outer_momentum: must be in [0, 1)"),
    (["--outer-lr", "-0.5"], "outer_lr: must be > 0, got -0.5"),
    (["--delay", "soon"], "argument --delay: invalid int (or auto) value: 'soon'"),
    (["--wire-dtype", "float64"], "argument --wire-dtype: invalid choice: 'float64'"),
    (["--rule", "pso", "--outer-momentum", "0.9"], "outer step works with the rules leader"),
    (["--select", "median"], "argument --select: invalid choice: 'median'"),
    (["--strategy", "localsgd", "--select", "soup"], "select: soup is for --strategy nosync"),
    (["--rule", "weighted", "--topology", "ring"], "topology: ring needs --strategy nosync"),
    (["--dataset", "npz:{npz_nan}"], "x_train holds 1 NaN or infinite values"),
    (["--dataset", "npz:{npz_label}"], "labels go up to 100000 but only 4 distinct values occur"),
    # an explicit --data-dir is used or refused, never replaced by $NOSYNC_DATA
    (["--dataset", "mnist", "--data-dir", "{tmp}/nowhere"], "data_dir: {tmp}/nowhere is not a"),
    (
        ["--dataset", "mnist", "--data-dir", "{partial_idx}"],
        "missing: train-labels-idx1-ubyte[.gz])",
    ),
    # issue 17 item 5: a flag that does nothing in the mode chosen is refused, not recorded
    (["--round", "blocking", "--delay", "5"], "delay: does nothing with --round blocking"),
    (["--strategy", "localsgd", "--delay", "5"], "delay: does nothing with --strategy localsgd"),
    (["--rule", "none", "--delay", "3"], "delay: does nothing with --rule none"),
    (["--strategy", "ddp", "--fitness", "held-out"], "fitness: does nothing with --strategy ddp"),
    (["--diversity", "--strategy", "ddp"], "diversity: does not apply to --strategy ddp"),
    (["--optimizer", "sgd", "--betas", "0.8,0.9"], "betas: does nothing with --optimizer sgd"),
    (["--eps", "1e-6"], "eps: does nothing with --optimizer sgd (it is for adam and adamw)"),
    (["--optimizer", "adam", "--momentum", "0.5"], "momentum: does nothing with --optimizer adam"),
    (["--strategy", "localsgd", "--round", "blocking"], "round: does nothing with --strategy"),
    (["--strategy", "diloco", "--rule", "pso"], "rule: does nothing with --strategy diloco"),
    (["--rule", "leader", "--c1", "1.5"], "c1: does nothing with --rule leader (it is for"),
    (["--rule", "pso", "--temperature", "0.1"], "temperature: does nothing with --rule pso"),
    (["--strategy", "easgd", "--pressure", "0.5"], "pressure: does nothing with --strategy easgd"),
    (["--easgd-beta", "0.5"], "easgd_beta: does nothing with --strategy nosync"),
    (["--topology", "ring", "--neighbors", "3"], "neighbors: does nothing with --topology ring"),
]


@pytest.fixture
def files(tmp_path: Path):
    made = {
        "tmp": tmp_path,
        "corrupt_idx": corrupt_idx(tmp_path / "idx"),
        "npz_missing": npz(tmp_path / "missing.npz", drop="y_test"),
        "npz_mismatched": npz(tmp_path / "mismatched.npz", short="y_train"),
        "a_file": tmp_path / "file.txt",
        "toml_syntax": tmp_path / "syntax.toml",
        "toml_unknown": tmp_path / "unknown.toml",
        "toml_type": tmp_path / "type.toml",
        "toml_latin1": tmp_path / "latin1.toml",
        "toml_inf": tmp_path / "inf.toml",
        "toml_nan": tmp_path / "nan.toml",
        "npz_nan": npz(tmp_path / "nan.npz", nan=True),
        "npz_label": npz(tmp_path / "label.npz", label=100_000),
        "npz_big": npz(tmp_path / "big.npz", n=40),
        "partial_idx": tiny_image_dataset(tmp_path / "partial"),
    }
    (made["partial_idx"] / "train-labels-idx1-ubyte.gz").unlink()
    made["toml_latin1"].write_bytes('out = "caf\xe9"\n'.encode("latin-1"))
    made["toml_inf"].write_text("timeout = inf\n")
    made["toml_nan"].write_text("timeout = nan\n")
    made["a_file"].write_text("not a folder")
    made["toml_syntax"].write_text("workers = = 4\n")
    made["toml_unknown"].write_text("learning_rate = 0.1\n")
    made["toml_type"].write_text('workers = "four"\n')
    (tmp_path / "empty").mkdir()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    made["busy_port"] = busy.getsockname()[1]
    yield made
    busy.close()


@pytest.mark.parametrize(("flags", "message"), CASES, ids=[c[1][:40] for c in CASES])
def test_bad_input_table(flags, message, files, capsys, monkeypatch) -> None:
    # a complete copy elsewhere must not stand in for a bad --data-dir
    monkeypatch.setenv("NOSYNC_DATA", str(tiny_image_dataset(files["tmp"] / "elsewhere")))
    out = files["tmp"] / "out"
    argv = ["train", *(f.format(**files) for f in flags)]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    message = message.format(**files)
    assert lines[0].startswith("nosync: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists()  # nothing half-written


# ---- issue 17 item 5: what a flag does depends on the mode ---------------------------------------
def test_a_default_given_as_a_flag_is_not_refused(tmp_path, capsys) -> None:
    """Only a value other than the default can be a mistake: ``--delay auto`` with blocking
    rounds is the automatic delay, which blocking rounds simply have no use for."""
    flags = ["--round", "blocking", "--delay", "auto", "--strategy", "nosync"]
    flags += ["--betas", "0.9,0.999"]
    assert main(["train", *flags, "--out", str(tmp_path / "run"), "--print-config"]) == 0
    assert 'delay = "auto"' in capsys.readouterr().out


def test_a_config_file_of_another_mode_is_used_where_it_applies(tmp_path, capsys) -> None:
    """A config.toml written by an earlier async run (every field) serves a blocking run: its
    delay is dropped with one warning line and recorded as the default, not refused."""
    assert main(["train", "--delay", "4", "--out", str(tmp_path / "a"), "--print-config"]) == 0
    earlier = tmp_path / "earlier.toml"
    earlier.write_text(capsys.readouterr().out)
    assert "delay = 4" in earlier.read_text()
    assert main(["train", "--config", str(earlier), "--print-config"]) == 0  # as it was: quiet
    captured = capsys.readouterr()
    assert captured.err == "" and "delay = 4" in captured.out
    argv = ["train", "--config", str(earlier), "--round", "blocking", "--print-config"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "nosync: warning: config: delay = 4 does nothing with --round blocking (it is for "
        "--round async); not used"
    ]
    assert 'delay = "auto"' in captured.out and 'round = "blocking"' in captured.out


def test_exploring_label_smoothing_by_the_training_loss_is_warned(tmp_path, capsys) -> None:
    """Issue 19: the training loss grows with label smoothing, so it cannot judge it (the copies
    drove it to the bottom of its range, RESULTS §17): one warning line, and the run goes on;
    with held-out fitness, or without label smoothing, nothing is said."""
    explore = ["--explore", "lr=0.01..0.1:log,label_smoothing=0..0.2", "--print-config"]
    assert main(["train", *explore, "--out", str(tmp_path / "a")]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nosync: warning: explore: label_smoothing")
    assert "--fitness held-out" in lines[0]
    assert main(["train", *explore, "--fitness", "held-out", "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().err == ""
    assert main(["train", "--explore", "lr=0.01..0.1:log", "--print-config"]) == 0
    assert capsys.readouterr().err == ""
