"""Human-readable results: the table printed at the end of a run."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:6.2f}"


def format_summary(summary: dict[str, Any], out: str) -> str:
    """The particles, the selected model, the ensemble and the weight average, as a table."""
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
