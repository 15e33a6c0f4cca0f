"""``nosync --help`` as a newcomer reads it: one true default per flag (or none), open choices
said to be open, the built-in datasets' shapes, and ``nosync --version``."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

import pytest

import nosync
from nosync import cli


def _help(capsys: pytest.CaptureFixture[str], *words: str) -> dict[str, str]:
    """Each option's help entry (its flags, metavar and text on one line), by its first flag."""
    with pytest.raises(SystemExit) as stop:
        cli.main([*words, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out.split("options:", 1)[1]
    entries: dict[str, str] = {}
    for chunk in re.split(r"\n(?=  -)", text.strip("\n")):
        flat = " ".join(chunk.split())
        entries[flat.split()[0].rstrip(",")] = flat
    return entries


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.parametrize("command", ["train", "compare", "simulate"])
def test_every_flag_shows_one_true_default_or_none(capsys, command: str) -> None:
    entries = _help(capsys, command)
    for entry in entries.values():
        assert entry.count("default") <= 1, entry
        assert not re.search(r"\(default: (|False|True)\)", entry), entry
    if command == "train":
        assert entries["--workers"].endswith("(default 4, or 1 for --strategy single)")
        for switch in ("--quiet", "--shard", "--compile"):
            assert "default" not in entries[switch]
        for empty in ("--out", "--resume", "--data-dir", "--inject"):
            assert "(default: )" not in entries[empty]
        assert entries["--delay"].endswith("(default: auto)")
        assert entries["--period"].endswith("(default: 25)")
    if command == "compare":
        assert entries["--workers"].endswith("(default: 2,4)")
        assert entries["--strategies"].endswith("(default: single,nosync,ddp,localsgd,easgd)")


def test_open_choices_say_so_and_datasets_give_their_shapes(capsys) -> None:
    entries = _help(capsys, "train")
    model = entries["--model"]
    assert model.startswith("--model MODEL ") and "{mlp,cnn}" not in model
    assert "MODULE:CALLABLE or FILE.py:CALLABLE" in model
    assert "MODULE:CALLABLE or FILE.py:CALLABLE" in entries["--loss"]
    dataset = entries["--dataset"]
    assert "digits (images 1x8x8)" in dataset and "mnist (1x28x28)" in dataset
    assert "FILE.py:CALLABLE" in dataset
    assert entries["--rule"].startswith("--rule {leader,")  # closed choices stay listed


def test_version_prints_the_packages_version(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    try:
        expected = version("nosync")
    except PackageNotFoundError:
        expected = nosync.__version__
    assert capsys.readouterr().out == f"nosync {expected}\n"
    assert cli.version() == expected


def test_version_without_package_metadata_is_the_sources(monkeypatch) -> None:
    import importlib.metadata

    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert cli.version() == nosync.__version__
