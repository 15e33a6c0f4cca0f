"""Results for people: the table printed after a run, and ``nosync report DIR``.

``nosync report`` redraws everything from files alone: a comparison folder (``compare.json``)
gets ``compare.md`` and its plots; a run folder (``summary.json``, ``metrics.jsonl``) gets
``report.md`` and its plots.
"""

from __future__ import annotations

import json
import math
import statistics
import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nosync.errors import UserError
from nosync.files import atomic_write, atomic_write_text
from nosync.run.metrics import read_metrics


def _save(fig: Any, path: Path) -> None:
    """A plot, written atomically like every other output, then closed."""
    import matplotlib.pyplot as plt

    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:6.2f}"


# what a run's final fitness is, by --fitness (the progress bar shows the rounds' as they land)
FITNESS_LEGEND = {
    "train-loss": "mean training loss over the final steps",
    "held-out": "loss on the held-out fitness set at the end",
}


def format_summary(summary: dict[str, Any], out: str, fitness_kind: str | None = None) -> str:
    """The particles, the selected model, the ensemble and the weight average, as a table;
    ``fitness_kind`` (``--fitness``) names the fitness in the table's legend."""
    fitness = summary.get("final_fitness") or [None] * summary["particles"]
    best = summary.get("best_particle")
    lines = [
        f"{summary['strategy']} ({summary.get('rule') or '-'}), {summary['workers']} worker(s), "
        f"{summary['particles']} particle(s), {summary['steps']} steps "
        f"({summary['epochs']:.1f} epochs) in {summary['wall_seconds']:.1f} s",
        "",
        "particle  fitness   test acc %",
    ]
    for i, acc in enumerate(summary.get("worker_test_accuracy") or []):
        fit = "    -   " if fitness[i] is None else f"{fitness[i]:8.4f}"
        mark = " *" if i == best and summary["particles"] > 1 else "  "
        lines.append(f"{i:>8}{mark}{fit}   {_pct(acc)}")
    if any(f is not None for f in fitness):
        what = FITNESS_LEGEND.get(fitness_kind or "", "the fitness at the end")
        star = "* the selected particle; " if best is not None and summary["particles"] > 1 else ""
        lines.append(f"{star}fitness: {what}, lower is better")
        lines.append("(the progress bar's leader and best were an earlier round's)")
    lines += [
        "",
        f"selected model:           {_pct(summary['test_accuracy'])} % test accuracy "
        f"({summary['selected']})",
        f"ensemble of particles:    {_pct(summary.get('ensemble_test_accuracy'))} %",
        f"weight average of swarm:  {_pct(summary.get('weight_average_test_accuracy'))} %",
        f"sync rounds {summary['sync_rounds']}, communication {summary['comm_seconds']:.2f} s, "
        f"{summary['comm_bytes'] / 1e6:.1f} MB per worker; "
        f"{summary['train_samples_per_second']:.0f} samples/s",
        f"outputs in {out}/",
    ]
    return "\n".join(lines)


# ---- comparisons --------------------------------------------------------------------------------
def _groups(data: dict[str, Any]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Finished cells grouped by (strategy label, workers), over seeds."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for entry in data["cells"].values():
        if "failed" not in entry:
            groups[(entry["cell"]["label"], entry["cell"]["workers"])].append(entry)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][1] > 1, kv[0][0], kv[0][1])))


@dataclass
class Row:
    """A row of the comparison's table: a label at a worker count, over seeds."""

    label: str
    workers: int
    entries: list[dict[str, Any]]  # the finished runs it reports (a tuned row: its best value's)
    samples: float | None  # samples one seed costs, all runs of the row (None: not recorded)
    tuned: dict[str, Any] | None = None  # a grid's best: key, value, label, labels

    def to_dict(self) -> dict[str, Any]:
        """What ``compare.json`` keeps of the row (``rows``)."""
        accuracy = [e["summary"]["test_accuracy"] for e in self.entries]
        row = {
            "label": self.label,
            "workers": self.workers,
            "seeds": len(self.entries),
            "test_accuracy": statistics.mean(accuracy),
            "samples_per_seed": self.samples,
        }
        return row | ({"tuned": self.tuned} if self.tuned else {})


def run_samples(entry: dict[str, Any]) -> int | None:
    """Training samples of one finished run, all its workers together: steps x batch size x
    workers (each particle of a swarm, each rank of ddp trains its own batches); None for a
    ``compare.json`` that did not record them."""
    per_worker = entry["summary"].get("samples_per_worker")
    return None if per_worker is None else int(per_worker) * int(entry["cell"]["workers"])


def _samples_per_seed(entries: list[dict[str, Any]]) -> float | None:
    counts = [run_samples(e) for e in entries]
    known = [c for c in counts if c is not None]
    return statistics.mean(known) if known and len(known) == len(counts) else None


def table_rows(data: dict[str, Any]) -> list[Row]:
    """Every (label, workers) with finished runs, as ``_groups`` orders them, except that a
    grid's values keep the grid's order (``period=5/10``, not the text order 10, 5) and its
    tuned rows follow them."""
    groups = _groups(data)
    rows = [Row(label, n, es, _samples_per_seed(es)) for (label, n), es in groups.items()]
    place: dict[str, tuple[str, int]] = {}  # a grid's labels: (the grid, position)
    for grid in data["settings"].get("grids", []):
        place |= {label: (grid["label"], i) for i, label in enumerate(grid["labels"])}
        for n in sorted({n for (label, n) in groups if label in grid["labels"]}):
            tuned = _tuned(grid, [groups.get((label, n), []) for label in grid["labels"]])
            if tuned is not None:
                rows.append(tuned)
                place[tuned.label] = (grid["label"], len(grid["labels"]))
    return sorted(rows, key=lambda r: (r.workers > 1, *place.get(r.label, (r.label, 0)), r.workers))


def _tuned(grid: dict[str, Any], members: list[list[dict[str, Any]]]) -> Row | None:
    """A grid's row at one worker count (``members``: each value's finished runs there): the
    value with the best mean test accuracy over seeds, costing the samples of every value;
    None until every value has a finished run (a best of the values run so far flatters)."""
    if not all(members):
        return None
    means = [statistics.mean(e["summary"]["test_accuracy"] for e in es) for es in members]
    best = means.index(max(means))  # the first of equals: the grid's order decides
    costs = [_samples_per_seed(es) for es in members]
    known = [c for c in costs if c is not None]
    value, label = grid["values"][best], grid["labels"][best]
    return Row(
        f"{grid['base']} tuned ({grid['key']}={value})",
        members[best][0]["cell"]["workers"],
        members[best],
        sum(known) if len(known) == len(costs) else None,
        {"key": grid["key"], "value": value, "label": label, "of": grid["labels"]},
    )


def _steps_to(curve: list[dict[str, Any]], target: float, key: str = "step") -> float | None:
    """First evaluation at which the selected model reaches ``target`` (None: never)."""
    for point in curve:
        if (point["selected_test_accuracy"] or 0) >= target:
            return point[key]
    return None


def resolve_target(data: dict[str, Any]) -> float:
    """``--target``, else 99% of single's mean final accuracy, else 99% of the lowest cell's."""
    if data["settings"].get("target"):
        return float(data["settings"]["target"])
    groups = _groups(data)
    singles = [
        e["summary"]["test_accuracy"]
        for (label, _), es in groups.items()
        if label == "single"
        for e in es
    ]
    if singles:
        return 0.99 * statistics.mean(singles)
    finals = [statistics.mean(e["summary"]["test_accuracy"] for e in es) for es in groups.values()]
    return 0.99 * min(finals) if finals else math.nan


def _mean_std(values: Sequence[float | None], scale: float = 1.0, digits: int = 2) -> str:
    present = [v * scale for v in values if v is not None]
    if not present:
        return "-"
    if len(present) == 1:
        return f"{present[0]:.{digits}f}"
    return f"{statistics.mean(present):.{digits}f} ± {statistics.stdev(present):.{digits}f}"


def speedups(data: dict[str, Any], target: float) -> dict[tuple[str, int], dict[str, Any]]:
    """S(N) = mean steps of one worker to ``target`` / mean steps per worker of N workers.

    Also the wall-time version from the measured training seconds.  ``steps`` averages the
    seeds that reached the target (counted in ``reached``); S(N) is given only when every seed of
    the cell and of ``single`` reached it, since a mean over the seeds that happened to get
    there flatters the cell (one lucky seed of three would read as a speedup).
    """
    single = _groups(data).get(("single", 1), [])
    base_steps = [_steps_to(e["curve"], target) for e in single]
    base_secs = [_steps_to(e["curve"], target, "train_seconds") for e in single]
    out = {}
    for r in table_rows(data):
        key, entries = (r.label, r.workers), r.entries
        steps = [_steps_to(e["curve"], target) for e in entries]
        secs = [_steps_to(e["curve"], target, "train_seconds") for e in entries]
        reached = [s for s in steps if s is not None]
        row: dict[str, Any] = {
            "reached": len(reached),
            "runs": len(entries),
            "steps": statistics.mean(reached) if reached else None,
        }
        base = [s for s in base_steps if s is not None]
        every = len(reached) == len(entries) > 0 and len(base) == len(base_steps) > 0
        if every:
            row["speedup_steps"] = statistics.mean(base) / statistics.mean(reached)
        secs_ok, base_secs_ok = [s for s in secs if s is not None], [s for s in base_secs if s]
        row["seconds"] = statistics.mean(secs_ok) if secs_ok else None
        if every and len(secs_ok) == len(secs) and len(base_secs_ok) == len(base_secs):
            row["speedup_wall"] = statistics.mean(base_secs_ok) / statistics.mean(secs_ok)
        out[key] = row
    return out


def compare_table(data: dict[str, Any]) -> str:
    """Markdown: one row per (strategy, workers), mean ± std over seeds."""
    target = resolve_target(data)
    speed = speedups(data, target)
    settings = data["settings"]
    lines = [
        f"Budget: {settings['steps']} optimizer steps per worker (the same samples per worker "
        f"for every strategy); target accuracy {100 * target:.2f} %.",
        "",
        "| strategy | N | seeds | test acc % (selected) | samples/seed (M) | ensemble % | "
        "weight avg % | steps to target | S(N) steps | time to target s | S(N) wall | train s | "
        "samples/s (all workers) | spread (mean) | spread (end) | best test acc % (curve) | "
        "train-test gap % (end) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table_rows(data):
        label, n, entries = row.label, row.workers, row.entries
        s = [e["summary"] for e in entries]
        curves = [e["curve"] for e in entries if e["curve"]]
        last = [c[-1] for c in curves]
        sp = speed[(label, n)]
        gap = [p["selected_train_accuracy"] - p["selected_test_accuracy"] for p in last]
        # Exploration is the spread while training, not at the end (a swarm converges then).
        spread = [_mean_of_known([p.get("spread") for p in c]) for c in curves]
        best = [max(p["selected_test_accuracy"] for p in c) for c in curves]
        steps = "-" if sp["steps"] is None else f"{sp['steps']:.0f} ({sp['reached']}/{sp['runs']})"
        lines.append(
            f"| {label} | {n} | {len(entries)} "
            f"| {_mean_std([x['test_accuracy'] for x in s], 100)} | {millions(row.samples)} "
            f"| {_mean_std([x['ensemble_test_accuracy'] for x in s], 100)} "
            f"| {_mean_std([x['weight_average_test_accuracy'] for x in s], 100)} "
            f"| {steps} | {_speedup(sp, 'speedup_steps')} | {_fmt(sp.get('seconds'), 1)} "
            f"| {_speedup(sp, 'speedup_wall')} "
            f"| {_mean_std([x['train_seconds'] for x in s], 1, 1)} "
            f"| {_mean_std([x['train_samples_per_second'] for x in s], 1, 0)} "
            f"| {_mean_std(spread, 1, 2)} | {_mean_std([p['spread'] for p in last], 1, 2)} "
            f"| {_mean_std(best, 100)} | {_mean_std(gap, 100)} |"
        )
    failed = [name for name, e in data["cells"].items() if "failed" in e]
    if failed:
        lines += ["", f"Failed cells (left out): {', '.join(failed)}."]
    lines += ["", SAMPLES_LEGEND]
    if data["settings"].get("grids"):
        lines += ["", TUNED_LEGEND]
    return "\n".join(lines)


SAMPLES_LEGEND = (
    "samples/seed (M): millions of training samples one seed of the row costs, all workers "
    "together (steps x batch size x workers: N particles of a swarm, --explore or not, count "
    "N times); a tuned row counts every value of its grid."
)
TUNED_LEGEND = (
    "LABEL tuned (key=value): the value of the label's grid with the best mean test accuracy "
    "over seeds at that N (picked on the test set, so optimistic), with its results and the "
    "whole grid's samples."
)


def millions(samples: float | None) -> str:
    """Samples in millions, three significant digits (a toy run's thousands stay readable)."""
    if samples is None:
        return "-"
    value = samples / 1e6
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _speedup(row: dict[str, Any], key: str) -> str:
    """S(N), or "not reached" when some seed (of the cell or of single) missed the target."""
    return _fmt(row[key]) if key in row else "not reached"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mean_curve(entries: list[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    """Average ``y`` over seeds at each evaluation (the cells share their evaluation steps)."""
    curves = [e["curve"] for e in entries if e["curve"]]
    n = min(len(c) for c in curves)
    xs = [statistics.mean(c[i][x] for c in curves) for i in range(n)]
    ys = [_mean_of_known([_value(c[i], y) for c in curves]) for i in range(n)]
    return xs, ys


def _mean_of_known(values: list[float | None]) -> float:
    """The mean of the values a run recorded (None: not recorded, e.g. no spread for diloco)."""
    known = [v for v in values if v is not None]
    return statistics.mean(known) if known else math.nan


def _value(point: dict[str, Any], y: str) -> float | None:
    if y == "gap":
        return point["selected_train_accuracy"] - point["selected_test_accuracy"]
    return point.get(y)


# the curves of a comparison: file, x, y (one panel per worker count; AXIS_LABELS names them)
CURVE_PLOTS = (
    ("accuracy_vs_samples.png", "samples_per_worker", "selected_test_accuracy"),
    ("accuracy_vs_time.png", "train_seconds", "selected_test_accuracy"),
    ("spread.png", "samples_per_worker", "spread"),
    ("gap.png", "samples_per_worker", "gap"),
)
AXIS_LABELS = {
    "samples_per_worker": "samples per worker",
    "train_seconds": "training wall time (s)",
    "selected_test_accuracy": "test accuracy (selected model)",
    "spread": "swarm spread (mean pairwise L2)",
    "gap": "train - test accuracy (selected model)",
}


def compare_plots(data: dict[str, Any], out: Path) -> list[Path]:
    """PNG plots: accuracy against samples and time, spread, gap (one panel per N), S(N)."""
    import matplotlib

    matplotlib.use("Agg")
    groups = _groups(data)
    counts = sorted({n for (_, n) in groups if n > 1}) or [1]
    paths = [_curve_plot(groups, counts, name, x, y, out) for name, x, y in CURVE_PLOTS]
    return [*paths, _speedup_plot(data, groups, counts, out)]


def colours(groups: dict[tuple[str, int], Any]) -> dict[str, str]:
    """One colour per strategy label, the same in every plot of a comparison."""
    labels = sorted({label for label, _ in groups})
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


def _curve_plot(
    groups: dict[tuple[str, int], list[dict[str, Any]]],
    counts: list[int],
    name: str,
    x: str,
    y: str,
    out: Path,
) -> Path:
    """``y`` against ``x``, one panel per worker count, each with ``single`` dashed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(counts), figsize=(5 * len(counts), 4), squeeze=False, sharey=True
    )
    colour = colours(groups)
    for ax, n in zip(axes[0], counts, strict=True):
        for (label, m), entries in groups.items():
            if m == n or m == 1:
                xs, ys = _mean_curve(entries, x, y)
                ls = "--" if m == 1 else "-"
                style = {"color": colour[label], "ls": ls, **_dots(len(xs))}
                ax.plot(xs, ys, label=f"{label} (N={m})", lw=1.5, **style)
        ax.set_title(f"N = {n}")
        ax.set_xlabel(AXIS_LABELS[x])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)  # every panel: each holds strategies of its own N
    axes[0][0].set_ylabel(AXIS_LABELS[y])
    if y == "selected_test_accuracy":
        finals = [_mean_curve(es, x, y)[1][-1] for es in groups.values()]
        axes[0][0].set_ylim(min(finals) - 0.06, max(finals) + 0.02)
    fig.tight_layout()
    _save(fig, out / name)
    return out / name


def _speedup_plot(
    data: dict[str, Any],
    groups: dict[tuple[str, int], list[dict[str, Any]]],
    counts: list[int],
    out: Path,
) -> Path:
    """S(N): steps per worker to the target, against the worker count, with linear for scale."""
    import matplotlib.pyplot as plt

    target = resolve_target(data)
    speed = speedups(data, target)
    fig, ax = plt.subplots(figsize=(5, 4))
    labels = sorted({label for (label, n) in groups if n > 1})
    top = max([1, *counts])
    ax.plot([1, top], [1, top], color="grey", ls=":", label="linear")
    for label in labels:
        pts = [(1, 1.0)] + [
            (n, speed[(label, n)].get("speedup_steps")) for n in counts if (label, n) in speed
        ]
        found = [(n, float(s)) for n, s in pts if s is not None]
        xs, ys = [p[0] for p in found], [p[1] for p in found]
        ax.plot(xs, ys, marker="o", label=label, color=colours(groups)[label])
    ax.set_xlabel("workers N")
    ax.set_ylabel("S(N), steps per worker to target")
    ax.set_title(f"speedup to {100 * target:.1f} % test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "speedup.png")
    return out / "speedup.png"


def write_compare_report(folder: Path) -> Path:
    """``compare.md`` and the plots, from ``compare.json`` alone."""
    data = read_object(folder / "compare.json", ("settings", "cells"))
    if not _groups(data):
        raise UserError(f"report: {folder} has no finished runs yet")
    plots = compare_plots(data, folder)
    settings = data["settings"]
    text = "\n".join(
        [
            "# nosync compare",
            "",
            f"Strategies {', '.join(settings['strategies'])}; workers "
            f"{', '.join(map(str, settings['workers']))}; {settings['seeds']} seed(s); "
            f"{shared_settings(settings['train'])}.",
            "",
            compare_table(data),
            "",
            *[f"![{p.stem}]({p.name})" for p in plots],
            "",
        ]
    )
    atomic_write_text(folder / "compare.md", text)
    return folder / "compare.md"


def shared_settings(train: dict[str, Any]) -> str:
    """The training settings every cell shares, as a reader wants them: ``key = value``."""
    if not train:
        return "the default training settings"
    return "training settings " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in train.items())


# ---- a single run --------------------------------------------------------------------------------
def write_run_report(folder: Path) -> Path:
    """``report.md`` and plots of one run: per-particle accuracy, fitness and leaders, spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = read_object(folder / "summary.json", ())
    if not summary.get("diverged"):  # a diverged run has no accuracies, epochs or throughput
        summary = read_object(folder / "summary.json", SUMMARY_KEYS)
    records = read_metrics(folder / "metrics.jsonl")
    evals = [r for r in records if r["type"] == "eval"]
    rounds = [r for r in records if r["type"] == "round" and r["fitness"]]
    fitness_kind = run_config(folder).get("fitness")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in evals]
    dots = _dots(len(evals))  # a line through one point draws nothing
    for p in range(summary["particles"]):
        axes[0].plot(steps, [r["test_accuracy"][p] for r in evals], label=f"particle {p}", **dots)
    selected = [r.get("selected_test_accuracy") for r in evals]
    axes[0].plot(steps, selected, "k--", label="selected", **dots)
    axes[0].set(xlabel="step", ylabel="test accuracy", title="accuracy")
    axes[0].legend(fontsize=8)
    for p in range(summary["particles"]):
        axes[1].plot(
            [r["step"] for r in rounds],
            [math.nan if r["fitness"][p] is None else r["fitness"][p] for r in rounds],
            label=f"particle {p}",
            **_dots(len(rounds)),
        )
    if not rounds:
        axes[1].text(0.5, 0.5, "no sync rounds", ha="center", transform=axes[1].transAxes)
    ylabel = f"fitness ({FITNESS_AXIS.get(fitness_kind or '', 'lower is better')})"
    axes[1].set(xlabel="step", ylabel=ylabel, title="sync rounds", yscale="log")
    axes[2].plot(steps, [r["spread"] for r in evals], **dots)
    axes[2].set(xlabel="step", ylabel="mean pairwise L2", title="swarm spread")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, folder / "run.png")
    lineage = _explore_plot(folder, records, summary, plt)  # --explore: values and copies
    leaders = summary.get("leaders") or []
    counts = {p: leaders.count(p) for p in sorted({x for x in leaders if x is not None})}
    diverged = summary.get("diverged")
    text = "\n".join(
        [
            f"# nosync run: {folder.name}",
            "",
            "```",
            f"training diverged at step {diverged['step']}: no model"
            if diverged
            else format_summary(summary, str(folder), fitness_kind),
            "```",
            "",
            "Rounds led per particle: "
            + (", ".join(f"{p}: {c}" for p, c in counts.items()) or "no sync rounds"),
            "",
            "![run](run.png)",
            "",
            *lineage,
        ]
    )
    atomic_write_text(folder / "report.md", text)
    return folder / "report.md"


def _explore_plot(
    folder: Path, records: list[dict[str, Any]], summary: dict[str, Any], plt: Any
) -> list[str]:
    """``--explore``: each particle's hyperparameters over training, a copy drawn from the
    donor's value to the copier's new one (the lineage); the report's lines about it."""
    rounds = [r for r in records if r["type"] == "round" and r.get("explore")]
    explore = summary.get("explore")
    if not rounds or not isinstance(explore, dict):
        return []
    from nosync.core.explore import Space

    names = list(rounds[0]["explore"]["values"][0])
    logs = {d.name for d in Space.parse(explore["space"], names=None).dims if d.log}
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False)
    steps = [r.get("applied_step", r["step"]) for r in rounds]
    for ax, name in zip(axes[0], names, strict=True):
        for p in range(len(rounds[0]["explore"]["values"])):
            values = [r["explore"]["values"][p][name] for r in rounds]
            ax.plot(steps, values, lw=1, drawstyle="steps-post", label=f"particle {p}")
        for r, step in zip(rounds, steps, strict=True):
            for copy in r["explore"]["exploits"]:  # (a donor's own values stay as they were)
                donor = r["explore"]["values"][copy["donor"]][name]
                ax.plot([step, step], [donor, copy["values"][name]], "k:", lw=0.8)
                ax.plot(step, copy["values"][name], "kv", ms=4)
        ax.set(xlabel="step", ylabel=name, title=f"{name} per particle (v: a copy)")
        ax.set_yscale("log" if name in logs else "linear")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, folder / "explore.png")
    schedule = explore.get("schedule") or []
    return [
        f"Explored {explore['space']}: {explore['exploits']} copies; the winner, particle "
        f"{explore['winner']}, trained with (from step: values) "
        + "; ".join(
            f"{c['step']}: " + ", ".join(f"{k}={v:.3g}" for k, v in c["values"].items())
            for c in schedule
        ),
        "",
        "![explore](explore.png)",
        "",
    ]


FITNESS_AXIS = {"train-loss": "training loss", "held-out": "held-out loss"}  # by --fitness


def _dots(points: int) -> dict[str, Any]:
    """Markers for a curve of few points (one point makes no line)."""
    return {"marker": "o", "markersize": 4} if points < 3 else {}


def run_config(folder: Path) -> dict[str, Any]:
    """A run folder's ``config.toml`` ({} when it has none that reads: a run of an old nosync)."""
    try:
        return tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_report(folder: Path) -> Path:
    """A comparison folder or a run folder, whichever ``folder`` is.

    Files that are not what nosync writes (a ``summary.json`` that is a list, a ``compare.json``
    that is ``{}`` or lacks a key deeper down) are one ``UserError`` naming the file.
    """
    if (folder / "compare.json").exists():
        write, files = write_compare_report, ["compare.json"]
    elif (folder / "summary.json").exists() and (folder / "metrics.jsonl").exists():
        write, files = write_run_report, ["summary.json", "metrics.jsonl"]
    else:
        raise UserError(f"report: {folder} holds neither a finished run nor a comparison")
    try:
        return write(folder)
    except UserError:
        raise
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as err:
        named = " or ".join(str(folder / f) for f in files)
        raise UserError(
            f"report: {named} is not what nosync writes ({type(err).__name__}: {err})"
        ) from None


# what the reports read of a run's summary.json (format_summary) and of a compare.json
SUMMARY_KEYS = (
    "strategy",
    "workers",
    "particles",
    "steps",
    "epochs",
    "wall_seconds",
    "test_accuracy",
    "selected",
    "sync_rounds",
    "comm_seconds",
    "comm_bytes",
    "train_samples_per_second",
)


def read_object(path: Path, keys: tuple[str, ...], what: str = "report") -> dict[str, Any]:
    """A JSON object with ``keys``, as nosync writes it; anything else is one ``UserError``
    (prefixed with ``what``, the command)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"{what}: cannot read {path}: {err.strerror}") from None
    except ValueError as err:  # not JSON, or not UTF-8
        raise UserError(f"{what}: {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{what}: {path} is not what nosync writes (a JSON object; this is a "
            f"{type(data).__name__})"
        )
    missing = [key for key in keys if key not in data]
    if missing:
        raise UserError(f"{what}: {path} is not what nosync writes (no {', '.join(missing)})")
    return data
