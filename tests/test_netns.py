"""The constrained-network benchmark's namespace handling: made, shaped, always removed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from helpers import ROOT, wait_for

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
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def ours() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith("nosync-bench-")]


def probe(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, "--probe", "--rates", "100mbit", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_namespace_gets_a_rate_limited_loopback_and_is_removed() -> None:
    result = probe()
    assert result.returncode == 0, result.stderr
    assert "tbf" in result.stdout and "rate 100Mbit" in result.stdout
    assert result.stdout.split()[0] not in ours()


def test_the_namespace_is_removed_after_a_failure() -> None:
    result = probe("--fail")
    assert result.returncode == 1 and "failing on purpose" in result.stderr
    assert result.stdout.split()[0] not in ours()


def test_the_namespace_is_removed_after_sigterm() -> None:
    run = subprocess.Popen(
        [sys.executable, SCRIPT, "--probe", "--hold", "60"], stdout=subprocess.PIPE, text=True
    )
    wait_for(
        lambda: any(n.startswith(f"nosync-bench-{run.pid}-") for n in ours()), 30, "the namespace"
    )
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=30)
    assert not any(n.startswith(f"nosync-bench-{run.pid}-") for n in ours())
