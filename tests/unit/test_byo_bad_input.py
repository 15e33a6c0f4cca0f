"""Bad user pieces (``--model/--dataset/--loss MODULE:CALLABLE``, a missing logger extra): exit
status 2, one line naming the flag, before any worker starts, and nothing written to ``--out``."""

from __future__ import annotations

import sys

import pytest

from nosync.cli import main

from support.helpers import write_user_module


@pytest.fixture
def mine(tmp_path):
    return write_user_module(tmp_path / "user")


CASES = [
    (["--model", "no_such_module_xyz:make"], "model: cannot import no_such_module_xyz"),
    (["--model", "{m}:NOT_CALLABLE"], "model: {m}:NOT_CALLABLE is a int, not a callable"),
    (["--model", "{m}:missing"], "has no attribute 'missing'"),
    (["--model", "{m}:not_a_module"], "model: {m}:not_a_module returned a int, not a torch"),
    (["--model", "{m}:wrong_width", "--dataset", "{m}:waves"], "dataset: samples of shape (12, 2)"),
    (["--model", "{m}:frozen"], "model: {m}:frozen has no trainable parameters"),
    (["--dataset", "{m}:not_datasets"], "dataset: {m}:not_datasets returned a int"),
    (["--model", "{m}:gru", "--dataset", "{m}:waves", "--loss", "{m}:vector_loss"], "loss: "),
    (["--model", "cnn2"], "argument --model: invalid choice: 'cnn2'"),
    (
        ["--model", "{m}:eight_outputs", "--dataset", "{m}:waves"],
        "model: {m}:eight_outputs gives 8 scores per sample but --dataset {m}:waves has 3 classes",
    ),
    (["--dataset", "{m}:empty"], "dataset: {m}:empty: the train set is empty (inputs (0, 8)"),
    (["--dataset", "{m}:nan_train"], "the train input tensor holds 1 NaN or infinite values"),
    (["--dataset", "{m}:inf_test"], "the test input tensor holds 1 NaN or infinite values"),
    (["--model", "{m}:gru", "--dataset", "{m}:nan_waves"], "holds 1 NaN or infinite values"),
    (["--model", "{exits}:make"], "model: cannot import {exits}: it called sys.exit(3)"),
    (["--dataset", "{m}:exits_when_called"], "dataset: exits_when_called() called sys.exit(3)"),
    (["--optimizer", "adam", "--betas", "0.9"], "betas: '0.9' is not two"),
]


@pytest.mark.parametrize(("flags", "message"), CASES)
def test_a_bad_user_piece_is_one_line_and_exit_2(flags, message, mine, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    exits = mine.parent / "exits.py"
    exits.write_text("import sys\n\nsys.exit(3)\n")
    flags = [f.format(m=mine, exits=exits) for f in flags]
    code = main(["train", "--workers", "2", "--steps", "5", *flags, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("nosync: error: ") and err.count("\n") == 1, err
    assert message.format(m=mine, exits=exits) in err
    assert not out.exists()


def test_a_missing_tensorboard_extra_says_how_to_install_it(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    out = tmp_path / "out"
    code = main(["train", "--steps", "5", "--logger", "tensorboard", "--out", str(out)])
    err = capsys.readouterr().err
    assert (
        code == 2
        and "logger: tensorboard is not installed; pip install 'nosync[tensorboard]'" in err
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("flag", "piece", "message"),
    [("--model", "not_a_module", "model: "), ("--dataset", "nan_train", "1 NaN or infinite")],
)
def test_simulate_checks_user_pieces_before_writing(
    flag, piece, message, mine, tmp_path, capsys
) -> None:
    out = tmp_path / "sim"
    code = main(["simulate", "--particles", "2", flag, f"{mine}:{piece}", "--out", str(out)])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_a_user_dataset_of_tensors_takes_the_fast_path_and_its_classes_attribute(
    monkeypatch,
) -> None:
    """Tensors and a two-tensor TensorDataset stay tensors (indexed directly, no DataLoader); a
    ``classes`` attribute wins over the labels."""
    import torch

    from nosync.data import datasets as data

    x, y = torch.randn(40, 3), torch.arange(40) % 4
    module = type(sys)("byo_tensors")
    monkeypatch.setitem(sys.modules, "byo_tensors", module)
    module.four = lambda: (x, y, x[:10], y[:10])
    ds = data.load_user_dataset("byo_tensors:four")
    assert ds.train_set is None and torch.equal(ds.x_train, x) and ds.classes == 4
    tensors = torch.utils.data.TensorDataset(x, y)
    tensors.classes = ["a", "b", "c", "d", "e"]
    module.pair = lambda: (tensors, (x[:10], y[:10]))
    ds = data.load_user_dataset("byo_tensors:pair")
    assert ds.train_set is None and ds.n_train == 40 and ds.classes == 5
