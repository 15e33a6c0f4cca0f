"""Datasets from local files, the fitness split and per-particle batch order."""

from __future__ import annotations

from pathlib import Path

from support.helpers import nosync, summary, tiny_image_dataset


def test_train_on_idx_files_from_data_dir(tmp_path: Path) -> None:
    data = tiny_image_dataset(tmp_path / "fm")
    out = tmp_path / "run"
    result = nosync(
        "train",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(data),
        "--workers",
        "2",
        "--epochs",
        "3",
        "--period",
        "5",
        "--quiet",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert summary(out)["test_accuracy"] > 0.9
