"""Issue-5 benchmark: nosync, localsgd and ddp on a slow network.

    sudo python benchmarks/netns_bench.py --rates 100mbit,1gbit --seeds 0 1

Each run's workers live in a network namespace this script makes (``ip netns add``) whose
loopback is rate-limited with a token bucket (``ip link set lo mtu 1500``, then ``tc qdisc ...
tbf rate R``; netem is not available here), so every byte between ranks crosses the limit.
Per rate and strategy: wall time until the selected model first reaches ``--target`` test
accuracy (training seconds, evaluation excluded), bytes sent per worker, and the share of
training time spent in communication.  All strategies get the same samples per worker
(Fashion-MNIST, mlp, 2 workers, one thread each).  Results go to
``benchmarks/results/netns.json`` and a Markdown table on stdout.

The namespace is removed when the script ends, also after a failure, Ctrl+C or SIGTERM; a
namespace left by a SIGKILLed run is removed by the next run (all are named ``nosync-bench-*``).

``--probe`` only makes the namespace, shows its qdisc and removes it (for the tests);
``--probe --fail`` fails on purpose after making it; ``--hold S`` waits S seconds inside.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREFIX = "nosync-bench-"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def remove(name: str) -> None:
    """Kill whatever still runs inside, then delete the namespace."""
    pids = ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "del", name, check=False)


def remove_stale() -> None:
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX):
            pid = name[len(PREFIX) :].split("-")[0]
            if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
                remove(name)


@contextmanager
def namespace(rate: str) -> Iterator[str]:
    """A fresh namespace whose loopback carries at most ``rate``; removed on the way out."""
    name = f"{PREFIX}{os.getpid()}-{rate}"
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "mtu", "1500")
        ip("-n", name, "link", "set", "lo", "up")
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                name,
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "64kb",
                "latency",
                "100ms",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        yield name
    finally:
        remove(name)
        signal.signal(signal.SIGTERM, previous)


def train_inside(name: str, flags: list[str], out: Path) -> dict:
    cmd = [
        "ip",
        "netns",
        "exec",
        name,
        sys.executable,
        "-m",
        "nosync",
        "train",
        *flags,
        "--quiet",
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"summary": summary, "curve": [r for r in curve if r["type"] == "eval"]}


def measure(run: dict, target: float) -> dict:
    s = run["summary"]
    reached = next((p for p in run["curve"] if p["selected_test_accuracy"] >= target), None)
    return {
        "seconds_to_target": reached["train_seconds"] if reached else None,
        "steps_to_target": reached["step"] if reached else None,
        "final_accuracy": s["test_accuracy"],
        "train_seconds": s["train_seconds"],
        "bytes_per_worker": s["comm_bytes"],
        "comm_share": s["comm_seconds"] / s["train_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="100mbit,1gbit")
    parser.add_argument("--strategies", default="nosync,localsgd,ddp")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=0.83)
    parser.add_argument("--evals", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "results" / "netns.json"))
    parser.add_argument("--probe", action="store_true", help="make, show and remove; no runs")
    parser.add_argument("--fail", action="store_true", help="with --probe: fail after setup")
    parser.add_argument("--hold", type=float, default=0, help="with --probe: wait inside")
    args = parser.parse_args()
    remove_stale()
    if args.probe:
        with namespace(args.rates.split(",")[0]) as name:
            print(name)
            print(
                subprocess.run(
                    ["ip", "netns", "exec", name, "tc", "qdisc", "show", "dev", "lo"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout,
                flush=True,
            )
            time.sleep(args.hold)
            if args.fail:
                raise RuntimeError("failing on purpose after setting up the namespace")
        return

    from nosync.compare import budget
    from nosync.config import resolve

    # the same samples per worker for every strategy: `epochs` passes of one worker
    steps = budget(resolve({}, {"dataset": "fashion-mnist", "epochs": args.epochs}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in args.rates.split(","):
            for seed in args.seeds:
                for strategy in args.strategies.split(","):
                    flags = [
                        "--strategy",
                        strategy,
                        "--workers",
                        "2",
                        "--threads",
                        "1",
                        "--dataset",
                        "fashion-mnist",
                        "--seed",
                        str(seed),
                        "--steps",
                        str(steps),
                        "--eval-every",
                        str(max(1, steps // args.evals)),
                    ]
                    with namespace(rate) as name:
                        run = train_inside(name, flags, Path(tmp) / f"{rate}-{strategy}-{seed}")
                    row = {
                        "rate": rate,
                        "strategy": strategy,
                        "seed": seed,
                        **measure(run, args.target),
                    }
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    result = {
        "command": " ".join(["python", "benchmarks/netns_bench.py", *sys.argv[1:]]),
        "settings": vars(args) | {"steps": steps},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print_table(rows, args.target)


def print_table(rows: list[dict], target: float) -> None:
    import statistics

    print(
        f"| rate | strategy | seconds to {100 * target:.0f} % | steps to target | final acc % "
        "| MB sent per worker | share of time communicating |\n|---|---|---|---|---|---|---|"
    )
    keys = sorted({(r["rate"], r["strategy"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for rate, strategy in keys:
        rs = [r for r in rows if r["rate"] == rate and r["strategy"] == strategy]
        secs = [r["seconds_to_target"] for r in rs if r["seconds_to_target"] is not None]
        steps = [r["steps_to_target"] for r in rs if r["steps_to_target"] is not None]
        print(
            f"| {rate} | {strategy} | {statistics.mean(secs):.1f} ({len(secs)}/{len(rs)})"
            if secs
            else f"| {rate} | {strategy} | not reached",
            end="",
        )
        print(f" | {statistics.mean(steps):.0f}" if steps else " | -", end="")
        print(
            f" | {100 * statistics.mean(r['final_accuracy'] for r in rs):.2f}"
            f" | {statistics.mean(r['bytes_per_worker'] for r in rs) / 1e6:.1f}"
            f" | {100 * statistics.mean(r['comm_share'] for r in rs):.1f} % |"
        )


if __name__ == "__main__":
    main()
