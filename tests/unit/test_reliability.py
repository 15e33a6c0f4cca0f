"""Crashes, hangs, NaNs and Ctrl+C, driven through the real CLI in subprocesses."""

from __future__ import annotations

import pytest


def test_a_second_ctrl_c_stops_at_once(monkeypatch) -> None:
    """The first Ctrl+C asks for a stop at the next vote (within about half a second, see
    test_stop_vote); one more than three seconds later, for a vote that does not come (a hung
    collective), stops at once.  Two within three seconds are one press (terminal + launcher)."""
    from nosync.run import control

    clock = [100.0]
    monkeypatch.setattr(control.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(control, "_stop_requested_at", 0.0)
    control._on_sigint()
    assert control._stop_requested_at == 100.0
    clock[0] = 102.0
    control._on_sigint()  # the same press, forwarded by the launcher
    clock[0] = 103.5
    with pytest.raises(KeyboardInterrupt):
        control._on_sigint()


@pytest.mark.parametrize(
    ("error", "where", "printed"),
    [
        (FileNotFoundError(2, "gone"), "multiprocessing/synchronize.py", False),
        (EOFError("Ran out of input"), "multiprocessing/spawn.py", False),
        (FileNotFoundError(2, "gone"), "my_model.py", True),
        (ValueError("a real bug"), "multiprocessing/spawn.py", True),
    ],
)
def test_a_rank_started_while_the_launcher_stops_prints_no_traceback(
    capsys, error: BaseException, where: str, printed: bool
) -> None:
    """Ctrl+C in the first seconds: a rank forked meanwhile finds the launcher's semaphores gone
    (``SemLock._rebuild``: FileNotFoundError); the fork server's hook keeps that race quiet and
    prints every other failure as usual."""
    from nosync.launch._forkserver_lifeline import _quiet_start

    code = compile("raise error", f"/usr/lib/python3/{where}", "exec")
    try:
        exec(code, {"error": error})
    except BaseException as err:  # noqa: BLE001 - handed to the hook as the fork server does
        _quiet_start(type(err), err, err.__traceback__)
    assert ("Traceback" in capsys.readouterr().err) is printed
