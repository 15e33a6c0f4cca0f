"""The constrained-network benchmark's namespaces: made, joined by a link shaped each way at the
configured rate (measured), always removed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from support.helpers import ROOT, wait_for

SCRIPT = str(ROOT / "benchmarks" / "netns_bench.py")


def namespaces_can_be_made() -> str | None:
    """None when this machine lets us make a namespace, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "needs iproute2 (ip, tc)"
    name = f"nosync-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode:
        return f"ip netns add failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], check=False)
    return None


REASON = namespaces_can_be_made()


@pytest.fixture(autouse=True)
def _namespaces() -> None:
    """Skip where namespaces cannot be made, except on CI (root, iproute2 installed by
    ``.ci/run``): there a missing namespace is a failure, not a silent skip."""
    if REASON is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: network namespaces must work here, but {REASON}")
    pytest.skip(REASON)


def ours() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith("nosync-bench-")]


def probe(*flags: str, rate: str = "100mbit") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, "--probe", "--rates", rate, *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_two_namespaces_get_a_veth_link_shaped_at_each_end_and_are_removed() -> None:
    result = probe()
    assert result.returncode == 0, result.stderr
    names = result.stdout.split("\n")[0].split()
    assert len(names) == 2
    for name in names:  # one token bucket on each end: each direction has its own limit
        assert re.search(rf"^{name} nsb\d+[ab]: qdisc tbf .*rate 100Mbit", result.stdout, re.M)
    assert not set(names) & set(ours())


def test_each_direction_carries_the_configured_rate() -> None:
    """Measured with a socket sender and receiver across the link (20 Mbit/s: 8 MB in ~3 s)."""
    result = probe("--measure", "8", rate="20mbit")
    assert result.returncode == 0, result.stderr
    rates = {
        how: [float(x) for x in re.findall(r"([\d.]+) Mbit/s", line)]
        for how, line in (
            line.split(":", 1) for line in result.stdout.splitlines() if "way" in line
        )
    }
    one_way, both = rates["one way at a time"], rates["both ways at once"]
    assert all(r <= 1.1 * 20 for r in one_way + both), rates  # the limit holds
    assert max(one_way) >= 0.7 * 20, rates  # and the link carries about that much
    assert sum(both) > 1.2 * 20, rates  # the two directions do not share one limit


def test_the_namespaces_are_removed_after_a_failure() -> None:
    result = probe("--fail")
    assert result.returncode == 1 and "failing on purpose" in result.stderr
    assert not set(result.stdout.split("\n")[0].split()) & set(ours())


def test_the_namespaces_are_removed_after_sigterm() -> None:
    run = subprocess.Popen(
        [sys.executable, SCRIPT, "--probe", "--hold", "60"], stdout=subprocess.PIPE, text=True
    )
    wait_for(
        lambda: len([n for n in ours() if n.startswith(f"nosync-bench-{run.pid}-")]) == 2,
        30,
        "the namespaces",
    )
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=30)
    assert not any(n.startswith(f"nosync-bench-{run.pid}-") for n in ours())
