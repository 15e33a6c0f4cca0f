"""``nosync compare``: a grid of runs (strategies x worker counts x seeds) under one budget.

Every cell is an ordinary ``nosync train`` run in its own folder under ``DIR/cells/``, started
as a subprocess one after another, with the same number of optimizer steps per worker (so the
same samples per worker) and the same evaluation points.  ``compare.json`` gathers what the
cells wrote; ``report.py`` turns it into a Markdown table and plots.  A comparison that is
interrupted and started again skips finished cells and resumes a cell that has a checkpoint.

A label's setting may list values, ``localsgd:lr=0.005/0.05/0.5``: a grid, one label per value
plus a "tuned" row that reports the best value at the price of the whole grid (a tuned
baseline is only fair when the tuning is counted).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nosync.core import rules
from nosync.errors import UserError
from nosync.files import atomic_write_text
from nosync.launch import interrupts
from nosync.run import build, loggers
from nosync.run.compat import AUTO, RENAMED, upgrade
from nosync.run.config import (
    FIELDS,
    STRATEGIES,
    TrainConfig,
    drop_unused,
    kind,
    parser_of,
    resolve,
    unused,
)
from nosync.run.metrics import read_metrics

INTERRUPTED = 130
CURVE_KEYS = (
    "step",
    "samples_per_worker",
    "train_seconds",
    "selected_test_accuracy",
    "selected_train_accuracy",
    "spread",
    "test_accuracy",
)
SUMMARY_KEYS = (
    "test_accuracy",
    "worker_test_accuracy",
    "ensemble_test_accuracy",
    "weight_average_test_accuracy",
    "wall_seconds",
    "train_seconds",
    "train_samples_per_second",
    "sync_rounds",
    "sync_seconds",
    "blocked_seconds",
    "comm_bytes",
    "comm_seconds",
    "steps",
    "samples_per_worker",
)


# baselines of ``--explore`` (issue 19), as labels: the swarm's particles with the shared
# --explore ranges, without the pull; ``pbt`` with Ray Tune's explore factors, ``sweep`` never
# copying (each particle keeps its starting values: a sweep in one run)
PRESETS: dict[str, dict[str, Any]] = {
    "pbt": {"strategy": "nosync", "rule": "none", "explore_factors": "0.8,1.2"},
    "sweep": {"strategy": "nosync", "rule": "none", "exploit_every": 0},
}

# what a cell's own settings (``LABEL:key=value``) may not change: compare sets them per cell
CELL_KEYS = {"strategy", "rule", "workers", "seed", "steps", "epochs", "eval_every", "out"}
CELL_KEYS |= {"quiet", "resume", "inject", "port", "max_restarts"}


@dataclass(frozen=True)
class Cell:
    label: str  # a strategy, or nosync-RULE, with its own settings: nosync-weighted:temperature=2
    workers: int
    seed: int

    @property
    def name(self) -> str:
        safe = self.label.replace(":", "_").replace(",", "_").replace("/", "_")
        return f"{safe}-n{self.workers}-s{self.seed}"


GRID = "/"  # between a grid's values: no shell quoting needed, and no number holds one


@dataclass(frozen=True)
class Grid:
    """A label whose setting ``key`` lists several values: it ran as ``labels``, one per value
    (in ``values``' order), and its tuned row is named after ``base``, the label without the key."""

    label: str  # canonical spelling, values joined by GRID: localsgd:lr=0.005/0.05,period=5
    key: str
    values: tuple[str, ...]
    labels: tuple[str, ...]
    base: str  # localsgd:period=5

    def to_dict(self) -> dict[str, Any]:
        """As ``compare.json`` keeps it (lists, so that a resumed comparison compares equal)."""
        return {
            "label": self.label,
            "key": self.key,
            "values": list(self.values),
            "labels": list(self.labels),
            "base": self.base,
        }


def parse_labels(text: str) -> list[str]:
    """The labels of ``--strategies``, a grid's values one label each (parse_strategies)."""
    return parse_strategies(text)[0]


def parse_strategies(text: str) -> tuple[list[str], list[Grid]]:
    """``single,nosync,nosync-pso:pressure=0.5,period=10,localsgd:lr=0.01/0.1`` -> labels, grids.

    A label is ``STRATEGY``, ``nosync-RULE`` (the swarm's rule), either followed by
    ``:key=value`` settings of its own (training flags in their TOML spelling, which win over
    the shared ones); after a label's first setting, comma-separated ``key=value`` items are
    its further settings.  One numeric setting of a label may list values separated by ``/``:
    the label becomes one label per value, and a :class:`Grid` that records them.  Labels come
    back in a canonical spelling.
    """
    parts: list[tuple[str, list[str]]] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        head, eq, _ = token.partition("=")
        if eq and ":" not in head:  # key=value: a further setting of the label before
            if not parts or not parts[-1][1]:
                raise UserError(f"strategies: {token!r} follows no LABEL:key=value")
            parts[-1][1].append(token)
        else:
            name, _, setting = token.partition(":")
            parts.append((name, [setting] if setting else []))
    if not parts:
        raise UserError("strategies: give at least one")
    labels: list[str] = []
    grids: list[Grid] = []
    seen: list[tuple[str, dict[str, Any]]] = []
    for name, settings in parts:
        strategy, _, rule = name.partition("-")
        if name not in PRESETS and (
            strategy not in STRATEGIES
            or (rule and (strategy != "nosync" or rule not in rules.RULES))
        ):
            raise UserError(
                f"strategies: unknown {name!r} (choose from {', '.join(STRATEGIES)}, "
                f"nosync-RULE with RULE one of {', '.join(rules.RULES)}, or "
                f"{' or '.join(PRESETS)} with --explore)"
            )
        grid = _grid_of(name, settings)
        members = [settings] if grid is None else _expand(settings, grid[0], grid[2])
        typed: list[dict[str, Any]] = []  # each member's settings, as settings_of types them
        for items in members:
            values = settings_of(name, items)
            label = _spell(name, values)
            if (name, values) in seen:  # the same cells twice: one run, two rows of the table
                raise UserError(f"strategies: {label} is given twice")
            seen.append((name, values))
            labels.append(label)
            typed.append(values)
        if grid is not None:
            grids.append(_grid(name, grid[1], typed, labels[-len(members) :]))
    return labels, grids


def _grid_of(name: str, items: list[str]) -> tuple[int, str, list[str]] | None:
    """Which of a label's settings lists values (its index, its key as ``settings_of`` spells
    it, and the values), or None.

    A text setting keeps its ``/`` (a path: ``data_dir=/data``); only numeric ones are grids,
    one per label, since two would make a cross product nobody could read as one row.
    """
    found: list[tuple[int, str, str, str]] = []  # index, key as given, its field, the text
    for i, item in enumerate(items):
        key, eq, text = (part.strip() for part in item.partition("="))
        field = RENAMED.get(key.replace("-", "_"), key.replace("-", "_"))
        if eq and GRID in text and not (field in FIELDS and kind(field)[0] == "str"):
            found.append((i, key, field, text))
    if not found:
        return None
    if len(found) > 1:
        keys = " and ".join(key for _, key, _, _ in found)
        raise UserError(
            f"strategies: {name}: values for both {keys}; a label takes values ({GRID}) for "
            "one key only (give one label per grid)"
        )
    index, key, field, text = found[0]
    values = [v.strip() for v in text.split(GRID)]
    for value in values:
        if not value:
            raise UserError(
                f"strategies: {name}: {key}={text} has an empty value (values are numbers "
                f"separated by {GRID}: {key}=0.01{GRID}0.1)"
            )
        automatic = field in FIELDS and kind(field)[1] and value == AUTO
        if not automatic and not _is_number(value):
            raise UserError(
                f"strategies: {name}: {key}={text}: {value!r} is not a number (values are "
                f"numbers separated by {GRID})"
            )
    return index, key.replace("-", "_"), values


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _expand(items: list[str], index: int, values: list[str]) -> list[list[str]]:
    """A label's settings once per value of its grid (the gridded item in its place)."""
    key = items[index].partition("=")[0].strip()
    return [[*items[:index], f"{key}={value}", *items[index + 1 :]] for value in values]


def _spell(name: str, values: dict[str, Any]) -> str:
    spelled = ",".join(f"{k}={_spell_value(v)}" for k, v in values.items())
    return f"{name}:{spelled}" if spelled else name


def _spell_value(value: Any) -> str:
    return AUTO if value is None else str(value)


def _grid(name: str, key: str, typed: list[dict[str, Any]], labels: list[str]) -> Grid:
    """The record of a label's grid (``typed``: each value's settings, from ``settings_of``),
    its spellings canonical like its labels'."""
    values = [_spell_value(t[key]) for t in typed]
    first = typed[0]
    spelled = ",".join(
        f"{k}={GRID.join(values) if k == key else _spell_value(v)}" for k, v in first.items()
    )
    rest = {k: v for k, v in first.items() if k != key}
    return Grid(f"{name}:{spelled}", key, tuple(values), tuple(labels), _spell(name, rest))


def settings_of(name: str, items: list[str]) -> dict[str, Any]:
    """A label's own settings, typed as the config's fields (``auto``: automatic, None; an old
    name or value is kept as spelled, and :func:`resolve` warns about it)."""
    values: dict[str, Any] = {}
    for item in items:
        key, eq, text = (part.strip() for part in item.partition("="))
        key = key.replace("-", "_")
        field = RENAMED.get(key, key)
        if not eq or field not in FIELDS or key in CELL_KEYS:
            raise UserError(
                f"strategies: {name}: {item!r} is not key=value with a training setting "
                f"(compare sets {', '.join(sorted(CELL_KEYS))} itself)"
            )
        if FIELDS[field].type == "bool":
            if text.lower() not in ("true", "false"):
                raise UserError(f"strategies: {name}: {key} must be true or false") from None
            values[key] = text.lower() == "true"
            continue
        parse = parser_of(field)
        try:
            values[key] = parse(text)
        except ValueError:
            raise UserError(
                f"strategies: {name}: {key} must be {parse.__name__}, got {text!r}"
            ) from None
    return values


def label_values(label: str) -> dict[str, Any]:
    """The config values a label sets: strategy, rule and its own settings."""
    name, _, spelled = label.partition(":")
    strategy, _, rule = name.partition("-")
    values: dict[str, Any] = {"strategy": strategy, **({"rule": rule} if rule else {})}
    values = dict(PRESETS[name]) if name in PRESETS else values
    return values | settings_of(name, spelled.split(",") if spelled else [])


def parse_workers(text: str) -> list[int]:
    try:
        counts = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise UserError(f"workers: {text!r} is not a comma-separated list of counts") from None
    if not counts or counts[0] < 1:
        raise UserError(f"workers: counts must be at least 1, got {text!r}")
    return counts


def plan(labels: list[str], workers: list[int], seeds: int) -> list[Cell]:
    """Seed by seed, so that an early stop still leaves whole comparisons; ``single`` runs once
    per seed with one worker, the other strategies with every count above one."""
    cells = []
    for seed in range(seeds):
        for label in labels:
            one = label_values(label)["strategy"] == "single"
            counts = [1] if one else [n for n in workers if n > 1]
            cells += [Cell(label, n, seed) for n in counts]
    return cells


def cell_config(base: dict[str, Any], cell: Cell, steps: int, eval_every: int, out: Path) -> dict:
    """A cell's whole configuration.  The shared settings (``base``) that do nothing for the
    cell's strategy are left at their defaults there (``--delay`` in a localsgd cell); a
    label's own settings must all apply."""
    own = label_values(cell.label)
    values = {
        **own,
        "workers": cell.workers,
        "seed": cell.seed,
        "steps": steps,
        "eval_every": eval_every,
        "out": str(out),
        "quiet": True,
    }
    if own["strategy"] == "ddp":
        values["ranks_per_particle"] = cell.workers
    cfg = resolve(base, values)
    drop_unused(cfg)
    return cfg.to_dict()


def budget(base: TrainConfig) -> int:
    """Optimizer steps per worker: ``epochs`` passes of one worker over the training set."""
    task = build.check(base)  # user pieces that do not fit fail here, before any cell runs
    if base.steps:
        return base.steps
    return max(1, round(base.epochs * (task.n // base.batch_size)))


def collect(folder: Path) -> dict[str, Any]:
    """What compare keeps of a finished cell: its summary and its evaluation curve."""
    summary = json.loads((folder / "summary.json").read_text())
    curve = [
        {k: r.get(k) for k in CURVE_KEYS}
        for r in read_metrics(folder / "metrics.jsonl")
        if r["type"] == "eval"
    ]
    return {"summary": {k: summary.get(k) for k in SUMMARY_KEYS}, "curve": curve}


def run_compare(
    base_values: dict[str, Any],
    labels: list[str],
    workers: list[int],
    seeds: int,
    evals: int,
    target: float | None,
    out: Path,
    quiet: bool = False,
    grids: list[Grid] | None = None,
) -> int:
    """Run the grid; returns 0, 1 when a cell failed, or 130 when interrupted.  ``grids``
    (from :func:`parse_strategies`) add their tuned rows; their labels are in ``labels``."""
    from nosync.tools.report import write_compare_report

    base = resolve(base_values, {"out": str(out / "cells" / "probe")})
    _check_labels(base_values, labels, out)
    loggers.check(base)
    steps = budget(base)
    settings = {
        "strategies": labels,
        "workers": workers,
        "seeds": seeds,
        "steps": steps,
        "eval_every": max(1, steps // evals),
        "target": target,
        "train": base_values,
    }
    if grids:  # (only then: a comparison of an older nosync, without the key, still resumes)
        settings["grids"] = [grid.to_dict() for grid in grids]
    data = _open_index(out, settings)
    status = _run_grid(settings, data, plan(labels, workers, seeds), out, quiet)
    if status != INTERRUPTED:
        write_compare_report(out)
    return status


PRINTED_COLUMNS = (
    "strategy",
    "N",
    "seeds",
    "test acc %",
    "samples/seed (M)",
    "steps to target",
    "S(N) steps",
    "train s",
)


def printed_summary(out: Path) -> str:
    """What ``nosync compare`` prints at the end: the main columns of ``compare.md`` as plain
    text (mean over seeds), and the files it wrote."""
    from nosync.tools.report import millions, read_object, resolve_target, speedups, table_rows

    data = read_object(out / "compare.json", ("settings", "cells"), "compare")
    target = resolve_target(data)
    speeds = speedups(data, target)
    rows = [list(PRINTED_COLUMNS)]
    for row in table_rows(data):
        label, n, runs = row.label, row.workers, [e["summary"] for e in row.entries]
        speed = speeds[(label, n)]
        steps = "-" if speed["steps"] is None else f"{speed['steps']:.0f}"
        rows.append([
            label,
            str(n),
            str(len(runs)),
            _mean_pm([100 * r["test_accuracy"] for r in runs]),
            millions(row.samples),
            f"{steps} ({speed['reached']}/{speed['runs']})",
            f"{speed['speedup_steps']:.2f}" if "speedup_steps" in speed else "not reached",
            f"{sum(r['train_seconds'] for r in runs) / len(runs):.1f}",
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    failed = [name for name, e in data["cells"].items() if "failed" in e]
    written = sorted(p.name for p in out.iterdir() if p.suffix in (".md", ".json", ".png"))
    return "\n".join(
        [
            f"target: {100 * target:.2f} % test accuracy (steps to target: seeds that reached it)",
            "samples/seed (M): training samples one seed of the row costs, all workers together"
            + ("; a tuned row counts its whole grid" if data["settings"].get("grids") else ""),
            "",
            *[line.rstrip() for line in table],
            *([f"failed (left out): {', '.join(failed)}"] if failed else []),
            "",
            f"wrote in {out}/: {', '.join(written)}; each run in cells/",
            f"the whole table: {out / 'compare.md'}; redraw with: nosync report {out}",
        ]
    )


def _mean_pm(values: list[float]) -> str:
    """``mean ± std`` over seeds (the mean alone for one seed)."""
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "-"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _check_labels(base_values: dict[str, Any], labels: list[str], out: Path) -> None:
    """A label's own settings that do not fit fail now, not mid-grid; so does a shared setting
    that no cell would use."""
    unused_by_all: dict[str, str] | None = None
    for label in labels:
        explores = label_values(label).get("explore", base_values.get("explore"))
        if label.partition(":")[0] in PRESETS and not explores:
            raise UserError(
                f"strategies: {label} needs --explore (the ranges its particles search)"
            )
        strategy = label_values(label)["strategy"]
        probe = {"workers": 1 if strategy == "single" else 2, "out": str(out / "cells" / "probe")}
        if strategy == "ddp":
            probe["ranks_per_particle"] = 2
        unused_here = unused(resolve(base_values, {**label_values(label), **probe}))
        if unused_by_all is None:
            unused_by_all = unused_here
        unused_by_all = {k: v for k, v in unused_by_all.items() if k in unused_here}
    for name, why in (unused_by_all or {}).items():
        if name in base_values:
            raise UserError(f"{name}: no strategy compared uses it ({labels[0]}: {why})")


def _open_index(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """``compare.json``: the one an interrupted comparison of the same settings left, or a new
    one, written before the first cell (so that an interrupted first cell can be resumed)."""
    from nosync.tools.report import read_object

    index = out / "compare.json"
    if index.exists():
        data = read_object(index, ("settings", "cells"), "compare")
        saved = data["settings"]  # written by an older nosync, maybe: compared in today's spelling
        if {**saved, "train": upgrade(saved.get("train", {}), warn=False)} != settings:
            raise UserError(
                f"out: {out} holds a comparison with other settings; pick another --out"
            )
        return data
    data = {"settings": settings, "cells": {}}
    out.mkdir(parents=True, exist_ok=True)
    _write_index(out, data)
    return data


def _write_index(out: Path, data: dict[str, Any]) -> None:
    """``compare.json``, with its table's rows as they stand (``rows``: label, workers, seeds,
    mean test accuracy, samples per seed, and a tuned row's pick) for programs to read."""
    from nosync.tools.report import table_rows

    data["rows"] = [row.to_dict() for row in table_rows(data)]
    atomic_write_text(out / "compare.json", json.dumps(data, indent=1) + "\n")


def _run_grid(
    settings: dict[str, Any], data: dict[str, Any], cells: list[Cell], out: Path, quiet: bool
) -> int:
    """The cells not finished yet, one after another; ``compare.json`` after each.  Returns 0,
    1 when a cell failed, or 130 when interrupted."""
    status = 0
    bar = tqdm(
        cells, desc="compare", unit="run", disable=quiet, file=sys.stderr, dynamic_ncols=True
    )
    interrupts.stop_deferring()  # from here on _CtrlC handles Ctrl+C (the setup above deferred it)
    ctrl_c = _CtrlC()
    with ctrl_c:
        for cell in bar:
            bar.set_postfix_str(cell.name, refresh=True)
            folder = out / "cells" / cell.name
            if cell.name in data["cells"] and "failed" not in data["cells"][cell.name]:
                continue  # finished in an earlier, interrupted comparison
            if ctrl_c.pressed:
                break
            steps, eval_every = settings["steps"], settings["eval_every"]
            config = cell_config(settings["train"], cell, steps, eval_every, folder)
            code = _run_cell(config, folder, ctrl_c)
            if code == 0:
                data["cells"][cell.name] = {"cell": cell.__dict__, **collect(folder)}
            elif ctrl_c.pressed:  # the cell saved a checkpoint and stopped; it resumes next time
                break
            else:
                status = 1
                log = beside(folder, ".log")
                data["cells"][cell.name] = {
                    "cell": cell.__dict__,
                    "failed": f"exit {code}, see {log}",
                }
                bar.write(
                    f"nosync: compare: {cell.name} failed (exit {code}); see {log}", file=sys.stderr
                )
            _write_index(out, data)
    bar.close()
    return INTERRUPTED if ctrl_c.pressed else status


class _CtrlC:
    """Ctrl+C during a comparison, whenever it comes: a running cell gets the SIGINT (it saves a
    checkpoint and stops), and no further cell starts."""

    def __init__(self) -> None:
        self.pressed = False
        self.child: subprocess.Popen | None = None

    def __enter__(self) -> _CtrlC:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, *_: object) -> None:
        self.pressed = True
        self.forward()

    def forward(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGINT)


def beside(folder: Path, suffix: str) -> Path:
    """``cells/NAME.log`` next to ``cells/NAME/`` (not ``with_suffix``: a label's settings put
    dots in NAME, ``temperature=0.1``, and two cells would share one log)."""
    return folder.parent / f"{folder.name}{suffix}"


def _run_cell(config: dict[str, Any], folder: Path, ctrl_c: _CtrlC) -> int:
    """One cell as a subprocess; resumes from the cell's checkpoint when it has one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if (folder / "checkpoints" / "latest.json").exists():
        cmd = ["train", "--resume", str(folder)]
    else:
        if folder.exists():  # started but never checkpointed: start again
            shutil.rmtree(folder)
        toml = beside(folder, ".toml")
        atomic_write_text(toml, TrainConfig.from_dict(config).to_toml())
        cmd = ["train", "--config", str(toml)]
    with open(beside(folder, ".log"), "a", encoding="utf-8") as log:
        ctrl_c.child = subprocess.Popen(
            [sys.executable, "-m", "nosync", *cmd], stdout=log, stderr=log
        )
        if ctrl_c.pressed:  # Ctrl+C came while the cell was being set up
            ctrl_c.forward()
        try:
            return ctrl_c.child.wait()
        finally:
            ctrl_c.child = None
