"""The ``nosync`` command line: it parses, then calls the library; nothing else lives here.

The library (and torch) is imported inside ``main``, so that a Ctrl+C while it loads is caught
there: one line and exit status 130.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, NoReturn

from nosync.errors import DeprecatedSetting, UserError
from nosync.launch import interrupts


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit status 2, instead of usage plus message."""
        raise UserError(f"{message} (see {self.prog} --help)")


# what `compare` sets per cell itself, so it takes no such flag
PER_CELL = {"strategy", "workers", "seed", "out", "resume", "eval_every", "inject", "port"}
REPEATABLE = {"inject"}  # given several times, the values add up (comma-joined)


def _add_train_flags(
    parser: argparse.ArgumentParser, exclude: Collection[str] = frozenset()
) -> None:
    from nosync.run.compat import AUTO, RENAMED
    from nosync.run.config import FIELDS, parser_of

    for name, f in FIELDS.items():
        if name in exclude:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f.metadata["help"]
        if shows_default(f):
            help_text += f" (default: {AUTO if f.default is None else f.default})"
        if f.type == "bool":
            parser.add_argument(
                flag, action="store_true", default=argparse.SUPPRESS, help=help_text
            )
        elif name in REPEATABLE:
            parser.add_argument(
                flag, action="append", default=argparse.SUPPRESS, help=help_text, metavar="SPEC"
            )
        else:
            parser.add_argument(
                flag,
                type=parser_of(name),
                choices=f.metadata["choices"],
                default=argparse.SUPPRESS,
                help=help_text,
                metavar=None if _closed(f.metadata["choices"]) else name.upper(),
            )
    for old, new in RENAMED.items():  # the old spelling still works, with a warning (compat.py)
        if new not in exclude:
            parser.add_argument(
                "--" + old.replace("_", "-"),
                choices=FIELDS[new].metadata["choices"],
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )


def shows_default(f: Any) -> bool:
    """Whether a training flag's help ends with its default: not a switch (off unless given),
    nor an empty default, nor a help that says its default itself (``--workers``)."""
    return f.type != "bool" and f.default != "" and "default" not in f.metadata["help"]


def _closed(choices: Collection[str] | None) -> bool:
    """Choices argparse may list as ``{a,b}``: not absent, nor open to ``MODULE:CALLABLE``."""
    from nosync.run.config import OrSpec

    return bool(choices) and not isinstance(choices, OrSpec)


def version() -> str:
    """The installed package's version (its metadata), else the source's ``__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("nosync")
    except PackageNotFoundError:
        from nosync import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nosync", description="Swarm training for PyTorch (NoSync).")
    parser.add_argument("--version", action="version", version=f"nosync {version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="one training run", description="One training run.")
    train.add_argument("--config", metavar="FILE.toml", help="TOML file of settings; flags win")
    train.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration and exit"
    )
    _add_train_flags(train)

    compare = commands.add_parser(
        "compare",
        help="a grid of runs: strategies x workers x seeds",
        description="Run strategies x worker counts x seeds under the same samples per worker, "
        "then write compare.json, compare.md and plots.",
    )
    compare.add_argument(
        "--strategies",
        nargs="+",
        default=["single,nosync,ddp,localsgd,easgd"],
        help="labels (comma- or space-separated): single, nosync, nosync-RULE, ddp, localsgd, "
        "easgd, diloco, pbt and sweep (with --explore), each optionally with settings of its own: "
        "'nosync-weighted:temperature=0.5,outer_momentum=0.9' localsgd:period=50; one numeric "
        "setting per label may list values separated by / (no shell quoting needed): "
        "localsgd:lr=0.005/0.05/0.5 runs one row per value plus a row 'localsgd tuned "
        "(lr=BEST)' with the best value's results and the whole grid's samples "
        "(default: single,nosync,ddp,localsgd,easgd)",
    )
    compare.add_argument(
        "--workers", default="2,4", help="comma list of worker counts (default: 2,4)"
    )
    compare.add_argument(
        "--seeds", type=int, default=3, help="seeds 0..N-1 for every cell (default: 3)"
    )
    compare.add_argument("--evals", type=int, default=20, help="evaluations per run (default: 20)")
    compare.add_argument(
        "--target",
        type=float,
        help="target accuracy for time-to-target "
        "and S(N) (default: 99%% of single's final accuracy)",
    )
    compare.add_argument("--config", metavar="FILE.toml", help="training settings shared by cells")
    compare.add_argument("--out", required=True, help="output folder (re-run to resume)")
    _add_train_flags(compare, PER_CELL)

    simulate = commands.add_parser(
        "simulate",
        help="a swarm of P particles in one process (statistical efficiency)",
        description="Run P particles one after another in this process with the same rules, "
        "data order and models as a real run; for studying swarms larger than the machine.",
    )
    simulate.add_argument("--particles", type=int, required=True, help="swarm size P")
    simulate.add_argument("--config", metavar="FILE.toml", help="TOML file of settings")
    _add_train_flags(
        simulate,
        {"workers", "ranks_per_particle", "resume", "inject", "port", "max_restarts", "strategy"}
        | {"device", "precision", "compile"},  # simulate runs its threads on the CPU
    )

    report = commands.add_parser(
        "report",
        help="plots and a Markdown report of a run or a comparison",
        description="Redraw plots and write a Markdown report from a finished run or comparison.",
    )
    report.add_argument("dir", help="a run folder or a compare folder")
    return parser


def _flags(args: argparse.Namespace, exclude: Collection[str] = frozenset()) -> dict[str, Any]:
    """The settings given as flags (repeated flags joined with commas)."""
    from nosync.run.compat import RENAMED
    from nosync.run.config import FIELDS

    values = vars(args)
    names = [*FIELDS, *RENAMED]
    flags = {k: values[k] for k in names if k in values and RENAMED.get(k, k) not in exclude}
    return {k: ",".join(v) if isinstance(v, list) else v for k, v in flags.items()}


def resume_hint(out: str | Path) -> str:
    """What a stopped run can do next, true to what is on disk (read without torch)."""
    try:
        step = json.loads((Path(out) / "checkpoints" / "latest.json").read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return (
            f"no checkpoint was saved, so there is nothing to resume in {out}; "
            "a fresh run may use it again"
        )
    return f"continue from the checkpoint at step {step} with: nosync train --resume {out}"


def _warn_dropped(lines: list[str]) -> None:
    """Settings of the --config file that do nothing in the mode chosen: said once, not used."""
    _warn([f"config: {line}" for line in lines])


def _warn(lines: list[str]) -> None:
    """One ``nosync: warning:`` line each (e.g. :func:`~nosync.run.config.advice`'s)."""
    for line in lines:
        print(f"nosync: warning: {line}", file=sys.stderr)


DIVERGED = 3  # exit status of a run that diverged (1: a worker failed, 2: bad input)


def diverged_line(summary: dict[str, Any], lr: float, out: str | Path) -> str:
    """The one line a diverged run ends with: where, and what to try (not a resume: resuming
    a diverged run only diverges again)."""
    return (
        f"nosync: training diverged at step {summary['diverged']['step']} (every particle's "
        f"weights or fitness became NaN or infinite); try a lower --lr (now {lr:g}) in a fresh "
        f"run; the summary is in {Path(out) / 'summary.json'}"
    )


def _train(args: argparse.Namespace) -> int:
    from nosync.launch.launcher import (
        INTERRUPTED,
        LaunchFailed,
        LaunchInterrupted,
        launch,
        under_launcher,
    )
    from nosync.run.config import advice, drop_unused, read_toml, resolve
    from nosync.tools.report import format_summary

    flags = _flags(args)
    if flags.get("resume"):
        # a resumed run is the run in that folder; flags may extend or adjust it
        if args.config:
            raise UserError("config: --resume continues the run's own config.toml; drop --config")
        saved = Path(flags["resume"]) / "config.toml"
        if not saved.is_file():
            raise UserError(f"resume: {flags['resume']} holds no nosync run (no config.toml)")
        file_values = read_toml(str(saved), warn=False)  # nosync's own file, maybe an older one
        flags["out"] = flags["resume"]
    else:
        file_values = read_toml(args.config) if args.config else {}
    cfg = resolve(file_values, flags, under_launcher())
    if not flags.get("resume"):  # (a resumed run keeps its own config.toml as it is)
        _warn_dropped(drop_unused(cfg))
        _warn(advice(cfg))
    if args.print_config:
        print(cfg.to_toml(), end="")
        return 0
    try:
        summary = launch(cfg)
    except (LaunchInterrupted, KeyboardInterrupt) as err:
        why = str(err) or "interrupted"
        print(f"nosync: {why}; {resume_hint(cfg.out)}", file=sys.stderr)
        return INTERRUPTED
    except LaunchFailed as err:
        print(f"nosync: error: {err}; {resume_hint(cfg.out)}", file=sys.stderr)
        return 1
    if summary is not None and summary.get("diverged"):
        print(diverged_line(summary, cfg.lr, cfg.out), file=sys.stderr)
        return DIVERGED
    if summary is not None:
        print(format_summary(summary, cfg.out, cfg.fitness))
        if not cfg.quiet:
            print(f"next: nosync report {cfg.out}  (plots and a Markdown report of the run)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from nosync.run.compat import upgrade
    from nosync.run.config import read_toml
    from nosync.tools.compare import parse_strategies, parse_workers, printed_summary, run_compare

    flags = upgrade(_flags(args, PER_CELL))  # (today's spelling, as compare.json records it)
    shared = read_toml(args.config) if args.config else {}
    unknown = PER_CELL & shared.keys()
    if unknown:
        raise UserError(f"config: compare sets {', '.join(sorted(unknown))} per run; drop them")
    base = {**shared, **flags}
    if args.seeds < 1 or args.evals < 1:
        raise UserError("seeds and evals: must be at least 1")
    if args.target is not None and not 0 < args.target <= 1:
        raise UserError(f"target: must be in (0, 1], got {args.target}")
    out = Path(args.out)
    if out.exists() and not (out / "compare.json").exists() and any(out.iterdir()):
        raise UserError(f"out: {out} is not empty and holds no comparison")
    labels, grids = parse_strategies(",".join(args.strategies))
    status = run_compare(
        base,
        labels,
        parse_workers(args.workers),
        args.seeds,
        args.evals,
        args.target,
        out,
        quiet=bool(base.get("quiet")),
        grids=grids,
    )
    if status == 130:
        print(
            "nosync: compare interrupted; run the same command again to continue", file=sys.stderr
        )
    elif (out / "compare.md").exists():
        print(printed_summary(out))
    return status


def _simulate(args: argparse.Namespace) -> int:
    from nosync.run.config import advice, drop_unused, read_toml, resolve
    from nosync.tools.simulate import simulate

    interrupts.stop_deferring()
    if args.particles < 1:
        raise UserError(f"particles: must be at least 1, got {args.particles}")
    flags = _flags(args)
    cfg = resolve(
        read_toml(args.config) if args.config else {}, {**flags, "workers": 1, "strategy": "nosync"}
    )
    _warn_dropped(drop_unused(cfg))
    _warn(advice(cfg))
    if not flags.get("out"):
        cfg.out = cfg.out.replace("-nosync", "-simulate")
    summary = simulate(cfg, args.particles)
    if summary.get("diverged"):
        print(diverged_line(summary, cfg.lr, cfg.out), file=sys.stderr)
        return DIVERGED
    print(
        f"simulated {args.particles} particles ({cfg.rule}, {cfg.topology}): selected "
        f"{100 * summary['test_accuracy']:.2f} %, ensemble "
        f"{100 * summary['ensemble_test_accuracy']:.2f} %; outputs in {cfg.out}/"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from nosync.tools.report import write_report

    interrupts.stop_deferring()
    folder = Path(args.dir)
    if not folder.is_dir():
        raise UserError(f"report: no such folder {folder}")
    path = write_report(folder)
    print(f"wrote {path}")
    return 0


# what is true after a Ctrl+C that reached the command outside its own handling
AFTER_CTRL_C = {
    "train": "stopped before training started; nothing was saved",
    "compare": "stopped; run the same command again to continue",
}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = words[0] if words else None  # known before parsing, which imports the library
    interrupts.defer()  # until the command's own work begins (see interrupts.py)
    try:
        with warnings.catch_warnings():
            _show_deprecated_settings()
            args = build_parser().parse_args(words)
            commands = {
                "train": _train,
                "compare": _compare,
                "simulate": _simulate,
                "report": _report,
            }
            return commands[args.command](args)
    except UserError as err:
        print(f"nosync: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # one line and the shell's status for Ctrl+C, no traceback
        print(f"nosync: {AFTER_CTRL_C.get(command or '', 'interrupted')}", file=sys.stderr)
        return 130
    finally:
        interrupts.restore()


def _show_deprecated_settings() -> None:
    """An old spelling of a flag or key (:class:`DeprecatedSetting`): one line on stderr, once
    per message; any other warning is shown as Python would (inside ``catch_warnings``)."""
    python_way = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, DeprecatedSetting):
            print(f"nosync: warning: {message}", file=sys.stderr)
        else:
            python_way(message, category, *args, **kwargs)

    warnings.showwarning = show
    warnings.filterwarnings("default", category=DeprecatedSetting)


if __name__ == "__main__":
    sys.exit(main())
