"""Issue-5 benchmark: nosync, localsgd and ddp on a slow network.

    sudo python benchmarks/netns_bench.py --rates 100mbit,1gbit --seeds 0 1

The two workers live in two network namespaces this script makes (``ip netns add``), joined by
a veth pair whose two ends each carry a token bucket (``tc qdisc ... tbf rate R``; netem is not
available here).  Each direction is therefore limited to R on its own, as on a full-duplex link
between two machines (shaping one loopback, as this script did first, put both directions
through one queue: R in total).  Each worker is one node of a two-node ``torchrun`` (c10d
rendezvous on the first namespace's address, gloo bound to the veth), so every byte between the
ranks crosses the limit.  Per rate and strategy: wall time until the selected model first
reaches ``--target`` test accuracy (training seconds, evaluation excluded), the payload through
training collectives per worker (sent and received), and the share of training time spent in
collectives.  All strategies get the same samples per worker (Fashion-MNIST, mlp, 2 workers,
one thread each).  Results go to ``benchmarks/results/netns.json`` and a Markdown table on
stdout.

The namespaces are removed when the script ends, also after a failure, Ctrl+C or SIGTERM;
namespaces left by a SIGKILLed run are removed by the next run (all are named
``nosync-bench-*``).

``--probe`` only makes the link, shows both qdiscs and removes it (for the tests); ``--probe
--measure MB`` also sends MB megabytes each way at once and prints the measured rates;
``--probe --fail`` fails on purpose after making it; ``--hold S`` waits S seconds inside.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import nosync_run

HERE = Path(__file__).resolve().parent
PREFIX = "nosync-bench-"
ADDRESSES = ("10.77.0.1", "10.77.0.2")  # the two ends of the link
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def remove(name: str) -> None:
    """Kill whatever still runs inside, then delete the namespace (and its end of the veth)."""
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


def shape(namespace: str, device: str, rate: str) -> None:
    ip("-n", namespace, "link", "set", device, "up")
    subprocess.run(
        ["ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", device, "root", "tbf"]
        + ["rate", rate, "burst", "64kb", "latency", "100ms"],
        check=True,
        capture_output=True,
        text=True,
    )


@contextmanager
def link(rate: str) -> Iterator[list[tuple[str, str, str]]]:
    """Two fresh namespaces joined by a veth pair, ``rate`` each way; removed on the way out.

    Yields ``(namespace, address, device)`` for both ends.
    """
    tag = f"{os.getpid()}-{rate}"
    names = [f"{PREFIX}{tag}-a", f"{PREFIX}{tag}-b"]
    devices = [f"nsb{os.getpid() % 100000}{end}" for end in "ab"]  # at most 15 characters
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    made: list[str] = []
    try:
        for name in names:
            made.append(name)  # first: a SIGTERM right after the add must still remove it
            ip("netns", "add", name)
            ip("-n", name, "link", "set", "lo", "up")
        ip(
            *("link", "add", devices[0], "netns", names[0], "type", "veth"),
            *("peer", "name", devices[1], "netns", names[1]),
        )
        ends = list(zip(names, ADDRESSES, devices, strict=True))
        for name, address, device in ends:
            ip("-n", name, "addr", "add", f"{address}/24", "dev", device)
            shape(name, device, rate)
        yield ends
    finally:
        for name in made:  # deleting a namespace deletes its end of the veth pair
            remove(name)
        signal.signal(signal.SIGTERM, previous)


def qdiscs(ends: list[tuple[str, str, str]]) -> str:
    return "".join(
        f"{name} {device}: "
        + subprocess.run(
            ["ip", "netns", "exec", name, "tc", "qdisc", "show", "dev", device],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for name, _, device in ends
    )


# a receiver that counts bytes from first to last and prints Mbit/s; a sender of N bytes
_RECEIVE = """
import socket, sys, time
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
conn, _ = server.accept()
total, start = 0, None
while chunk := conn.recv(1 << 16):
    start = start or time.perf_counter()
    total += len(chunk)
print(total * 8 / (time.perf_counter() - start) / 1e6, flush=True)
"""
_SEND = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as conn:
    conn.sendall(bytes(int(sys.argv[3])))
"""


def measure_link(
    ends: list[tuple[str, str, str]], megabytes: float, together: bool = True
) -> list[float]:
    """Send ``megabytes`` each way, at the same time or one way after the other; the measured
    Mbit/s of a->b and b->a."""
    if not together:
        return [measure_link(ends, megabytes)[0], measure_link(ends[::-1], megabytes)[0]]
    port = 45_000 + os.getpid() % 10_000
    receivers = []
    for name, address, _ in ends:
        receivers.append(
            subprocess.Popen(
                ["ip", "netns", "exec", name, sys.executable, "-c", _RECEIVE, address, str(port)],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        assert receivers[-1].stdout is not None and receivers[-1].stdout.readline() == "ready\n"
    senders = [
        subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", _SEND, peer, str(port)]
            + [str(int(megabytes * 1e6))]
        )
        for (name, _, _), (_, peer, _) in zip(ends, reversed(ends), strict=True)
    ]
    for sender in senders:
        sender.wait(timeout=300)
    rates = [float(r.communicate(timeout=300)[0]) for r in receivers]
    return [rates[1], rates[0]]  # b received what a sent, and the other way round


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_inside(ends: list[tuple[str, str, str]], flags: list[str], out: Path) -> dict:
    """One rank per namespace: a two-node torchrun across the shaped link."""
    endpoint = f"{ends[0][1]}:{free_port()}"
    nodes = []
    for host, (name, address, device) in zip((1, 0), ends, strict=True):
        cmd = ["ip", "netns", "exec", name, "env", f"GLOO_SOCKET_IFNAME={device}"]
        cmd += [TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
        cmd += ["--rdzv-endpoint", endpoint, "--rdzv-id", out.name, "--local-addr", address]
        cmd += ["--rdzv-conf", f"is_host={host}"]  # the first end holds the rendezvous store
        cmd += nosync_run.command("train", flags, out)[1:]  # -m nosync train ... under torchrun
        env = {**os.environ, "OMP_NUM_THREADS": "1", "LOGLEVEL": "ERROR"}
        nodes.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
            )
        )
    logs = [node.communicate()[0] for node in nodes]
    if any(node.returncode for node in nodes):
        raise RuntimeError(f"{out.name} failed:\n" + "\n".join(log[-2000:] for log in logs))
    run = nosync_run.read(out)
    return {"summary": run.summary, "curve": run.of_type("eval")}


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
    parser.add_argument(
        "--measure", type=float, default=0, help="with --probe: send MB each way, print rates"
    )
    args = parser.parse_args()
    remove_stale()
    if args.probe:
        with link(args.rates.split(",")[0]) as ends:
            print(" ".join(name for name, _, _ in ends))
            print(qdiscs(ends), flush=True)
            if args.measure:
                for together in (False, True):
                    there, back = measure_link(ends, args.measure, together)
                    how = "both ways at once" if together else "one way at a time"
                    print(f"{how}: a->b {there:.1f} Mbit/s, b->a {back:.1f} Mbit/s", flush=True)
            time.sleep(args.hold)
            if args.fail:
                raise RuntimeError("failing on purpose after setting up the namespaces")
        return

    from nosync.run.config import resolve
    from nosync.tools.compare import budget

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
                    with link(rate) as ends:
                        run = train_inside(ends, flags, Path(tmp) / f"{rate}-{strategy}-{seed}")
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
        "| MB through collectives per worker (sent + received) | share of time in collectives |"
        "\n|---|---|---|---|---|---|---|"
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
