"""Issue-4 benchmark: what a `kill -9` of one worker costs.

    python benchmarks/kill_recovery.py --seeds 0 1 2

For each seed, two runs of the same configuration (Fashion-MNIST, mlp, 2 workers,
``--max-restarts 1``): one left alone, one where a worker process is killed with SIGKILL at
step 3250, half of the 6000 steps plus half a checkpoint interval (the default interval is 20
rounds of 25 steps, so the kill lands 250 steps after the last checkpoint).  Reported per seed:
wall time of both runs, the time from the kill until training resumed from the checkpoint
(recovery), the steps redone (kill step minus the checkpoint step), and both runs' test
accuracy.  Results go to ``benchmarks/results/kill_recovery.json`` and a Markdown table on
stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nosync_run

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers import worker_pids  # noqa: E402  (the same process-tree lookup the tests use)


def records(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines[:-1] if line.strip()]  # last line may be partial


def run(flags: list[str], out: Path, kill_at: int | None) -> dict:
    start = time.monotonic()
    proc = subprocess.Popen(
        nosync_run.command("train", flags, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = {}
    if kill_at is not None:
        while proc.poll() is None:
            done = [r["step"] for r in records(out) if r["type"] == "round"]
            if done and done[-1] >= kill_at:
                victim = worker_pids(proc.pid)[-1]
                killed = {"step": done[-1], "time": time.time()}
                subprocess.run(["kill", "-9", str(victim)], check=True)
                break
            time.sleep(0.05)
    _, err = proc.communicate()
    if proc.returncode:
        sys.exit(f"run failed:\n{err[-2000:]}")
    summary = nosync_run.read(out).summary
    result = {
        "wall": time.monotonic() - start,
        "accuracy": summary["test_accuracy"],
        "restarts": summary["restarts"],
    }
    if killed:
        resume = next(r for r in records(out) if r["type"] == "resume")
        result |= {
            "kill_step": killed["step"],
            "resume_step": resume["step"],
            "recovery_seconds": resume["time"] - killed["time"],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--kill-after", type=int, default=3250, help="step to kill at")
    parser.add_argument("--out", default=str(HERE / "results" / "kill_recovery.json"))
    args = parser.parse_args()
    flags = [
        "--dataset",
        "fashion-mnist",
        "--workers",
        "2",
        "--steps",
        str(args.steps),
        "--max-restarts",
        "1",
        "--quiet",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            seeded = [*flags, "--seed", str(seed)]
            clean = run(seeded, Path(tmp) / f"clean{seed}", None)
            killed = run(seeded, Path(tmp) / f"killed{seed}", args.kill_after)
            rows.append({"seed": seed, "clean": clean, "killed": killed})
            print(f"seed {seed}: clean {clean}, killed {killed}", file=sys.stderr)
    result = {
        "command": " ".join(["python", "benchmarks/kill_recovery.py", *sys.argv[1:]]),
        "flags": flags,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        "| seed | wall, no kill (s) | wall, one kill (s) | recovery (s) | steps redone | "
        "accuracy, no kill | accuracy, one kill |\n|---|---|---|---|---|---|---|"
    )
    for r in rows:
        c, k = r["clean"], r["killed"]
        print(
            f"| {r['seed']} | {c['wall']:.1f} | {k['wall']:.1f} | {k['recovery_seconds']:.1f} | "
            f"{k['kill_step'] - k['resume_step']} | {c['accuracy']:.4f} | {k['accuracy']:.4f} |"
        )
    mean = statistics.mean
    print(
        f"| mean | {mean(r['clean']['wall'] for r in rows):.1f} | "
        f"{mean(r['killed']['wall'] for r in rows):.1f} | "
        f"{mean(r['killed']['recovery_seconds'] for r in rows):.1f} | "
        f"{mean(r['killed']['kill_step'] - r['killed']['resume_step'] for r in rows):.0f} | "
        f"{mean(r['clean']['accuracy'] for r in rows):.4f} | "
        f"{mean(r['killed']['accuracy'] for r in rows):.4f} |"
    )


if __name__ == "__main__":
    main()
