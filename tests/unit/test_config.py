"""The configuration's spellings: "automatic" is None (``auto`` on the command line and in
TOML), ``--wire-dtype`` was ``--exchange``; the old spellings still work with one warning line
each, and what a run writes reads back the same, without warnings, even from an older nosync."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch

from nosync.cli import main
from nosync.errors import DeprecatedSetting
from nosync.run import checkpoint
from nosync.run.config import TrainConfig, read_toml, resolve


def printed(capsys, *flags: str) -> tuple[str, list[str]]:
    """``nosync train FLAGS --print-config``: the TOML printed and the lines on stderr."""
    assert main(["train", *flags, "--out", "runs/x", "--print-config"]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err.splitlines()


def test_automatic_is_none_and_filled_where_the_strategy_has_a_value() -> None:
    swarm, diloco = resolve({}, {}), resolve({}, {"strategy": "diloco"})
    assert (swarm.outer_lr, swarm.outer_momentum, swarm.delay) == (None, 0.0, None)
    assert (diloco.outer_lr, diloco.outer_momentum) == (0.7, 0.9)
    assert TrainConfig().delay is TrainConfig().outer_lr is TrainConfig().outer_momentum is None


def test_auto_on_the_command_line_is_the_default_and_says_nothing(capsys) -> None:
    default, err = printed(capsys)
    assert err == [] and 'delay = "auto"' in default and 'outer_lr = "auto"' in default
    given, err = printed(
        capsys, "--delay", "auto", "--outer-lr", "auto", "--outer-momentum", "auto"
    )
    assert (given, err) == (default, [])


def test_old_automatic_flags_still_work_with_one_warning_line_each(capsys) -> None:
    default, _ = printed(capsys)
    old, err = printed(capsys, "--delay", "-1", "--outer-lr", "0", "--outer-momentum", "-1")
    assert old == default
    assert err == [
        "nosync: warning: --outer-lr 0 for automatic is deprecated; use --outer-lr auto (or "
        "leave the flag out)",
        "nosync: warning: --outer-momentum -1 for automatic is deprecated; use --outer-momentum "
        "auto (or leave the flag out)",
        "nosync: warning: --delay -1 for automatic is deprecated; use --delay auto (or leave "
        "the flag out)",
    ]


def test_exchange_is_wire_dtype_and_both_names_are_written(capsys) -> None:
    new, err = printed(capsys, "--wire-dtype", "bfloat16")
    assert err == [] and 'wire_dtype = "bfloat16"' in new and 'exchange = "bfloat16"' in new
    old, err = printed(capsys, "--exchange", "bfloat16")
    assert old == new
    assert err == ["nosync: warning: --exchange is deprecated; use --wire-dtype"]
    argv = ["train", "--exchange", "bfloat16", "--wire-dtype", "float16", "--print-config"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "nosync: error: wire_dtype: exchange = 'bfloat16' and wire_dtype = 'float16' disagree\n"
    )


def test_old_spellings_in_a_toml_file_warn_once_each_naming_the_file(tmp_path, capsys) -> None:
    old = tmp_path / "old.toml"
    old.write_text('exchange = "float16"\ndelay = -1\nouter_lr = 0\nouter_momentum = -1\n')
    new = tmp_path / "new.toml"
    new.write_text('wire_dtype = "float16"\ndelay = "auto"\n')
    from_new, err = printed(capsys, "--config", str(new))
    assert err == []
    from_old, err = printed(capsys, "--config", str(old))
    assert from_old == from_new
    assert err == [
        f"nosync: warning: config: {old}: key exchange is deprecated; use wire_dtype",
        f'nosync: warning: config: {old}: outer_lr = 0 for automatic is deprecated; use "auto" '
        "(or leave the key out)",
        f"nosync: warning: config: {old}: outer_momentum = -1 for automatic is deprecated; use "
        '"auto" (or leave the key out)',
        f'nosync: warning: config: {old}: delay = -1 for automatic is deprecated; use "auto" '
        "(or leave the key out)",
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text('delay = "soon"\n')
    assert main(["train", "--config", str(bad), "--print-config"]) == 2
    assert f"{bad}: delay must be int or \"auto\", got 'soon'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"strategy": "diloco"},
        {"delay": 3, "wire_dtype": "bfloat16", "outer_momentum": 0.5, "outer_lr": 0.2},
        {"strategy": "localsgd", "workers": 2},
    ],
)
def test_config_toml_reads_back_the_same_without_warnings(tmp_path, flags) -> None:
    cfg = resolve({}, {"out": str(tmp_path / "run"), **flags})
    (tmp_path / "config.toml").write_text(cfg.to_toml())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve(read_toml(str(tmp_path / "config.toml")), {}) == cfg
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_the_old_names_are_deprecated_in_python_too() -> None:
    with pytest.warns(DeprecationWarning, match="TrainConfig.exchange is deprecated"):
        assert TrainConfig(wire_dtype="float16").exchange == "float16"
    with pytest.warns(DeprecatedSetting, match="delay = -1 for automatic is deprecated"):
        assert resolve({"delay": -1}, {}).delay is None
    assert issubclass(DeprecatedSetting, DeprecationWarning)


def old_run_folder(folder: Path) -> Path:
    """A run folder as nosync wrote it before: sentinel values for automatic and the key
    ``exchange`` in config.toml and in the checkpoint's record, two ranks' files at step 20."""
    cfg = resolve({}, {"workers": 2, "steps": 40, "period": 10, "out": str(folder)})
    old = {k: v for k, v in cfg.to_dict().items() if k != "wire_dtype"}
    old |= {"outer_lr": 0.0, "delay": -1}  # outer_momentum was always written resolved
    import tomli_w

    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(tomli_w.dumps(old))
    step_dir = folder / "checkpoints" / "step-000000020"
    step_dir.mkdir(parents=True)
    digests = {}
    for rank in range(2):
        path = step_dir / f"rank-{rank:05d}.pt"
        torch.save({"step": 20}, path)
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    record = {"step": 20, "world": 2, "dir": step_dir.name, "config": old, "sha256": digests}
    (folder / "checkpoints" / "latest.json").write_text(json.dumps(record))
    return folder


def test_an_old_run_folder_still_resumes_quietly(tmp_path, capsys) -> None:
    folder = old_run_folder(tmp_path / "old")
    resumed, err = printed(capsys, "--resume", str(folder))
    assert err == []  # nosync's own older file: nothing for the user to change
    cfg = resolve(read_toml(str(folder / "config.toml"), warn=False), {"out": str(folder)})
    assert (cfg.delay, cfg.outer_lr, cfg.wire_dtype) == (None, None, "float32")
    assert checkpoint.check_resumable(folder, cfg.to_dict())["step"] == 20
    with pytest.raises(Exception, match=r"cannot change delay=None \(now 4\)"):
        cfg.delay = 4
        checkpoint.check_resumable(folder, cfg.to_dict())
