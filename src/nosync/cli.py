"""The ``nosync`` command line: it parses, then calls the library; nothing else lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .config import FIELDS, read_toml, resolve
from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit status 2, instead of usage plus message."""
        raise UserError(f"{message} (see {self.prog} --help)")


def _flag_type(kind: str) -> Any:
    return {"int": int, "float": float, "str": str}[kind]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nosync", description="Swarm training for PyTorch (NoSync).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="one training run", description="One training run.")
    train.add_argument("--config", metavar="FILE.toml", help="TOML file of settings; flags win")
    train.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration and exit"
    )
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if f.type == "bool":
            train.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help_text)
        else:
            train.add_argument(
                flag,
                type=_flag_type(f.type),
                choices=f.metadata["choices"],
                default=argparse.SUPPRESS,
                help=help_text,
                metavar=None if f.metadata["choices"] else name.upper(),
            )
    return parser


def _train(args: argparse.Namespace) -> int:
    from .launch import INTERRUPTED, LaunchFailed, LaunchInterrupted, launch, under_launcher
    from .report import format_summary

    values = vars(args)
    flags = {k: values[k] for k in FIELDS if k in values}
    if flags.get("resume"):
        # a resumed run is the run in that folder; flags may extend or adjust it
        if args.config:
            raise UserError("config: --resume continues the run's own config.toml; drop --config")
        saved = Path(flags["resume"]) / "config.toml"
        if not saved.is_file():
            raise UserError(f"resume: {flags['resume']} holds no nosync run (no config.toml)")
        file_values = read_toml(str(saved))
        flags["out"] = flags["resume"]
    else:
        file_values = read_toml(args.config) if args.config else {}
    cfg = resolve(file_values, flags, under_launcher())
    if args.print_config:
        print(cfg.to_toml(), end="")
        return 0
    try:
        summary = launch(cfg)
    except LaunchInterrupted as err:
        print(f"nosync: {err}; resume with: nosync train --resume {cfg.out}", file=sys.stderr)
        return INTERRUPTED
    except LaunchFailed as err:
        print(f"nosync: error: {err}", file=sys.stderr)
        return 1
    if summary is not None:
        print(format_summary(summary, cfg.out))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return {"train": _train}[args.command](args)
    except UserError as err:
        print(f"nosync: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
