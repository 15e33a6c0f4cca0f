"""Running the real command line in a subprocess, with a timeout so a hang fails."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def nosync(
    *args: str, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m nosync ARGS``; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "nosync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def torchrun_script(script: Path, ranks: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node=RANKS SCRIPT ARGS`` (one CPU thread a rank)."""
    import shutil

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    command = [torchrun, "--standalone", f"--nproc_per_node={ranks}", str(script), *args]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")}
    for _ in range(2):
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
        # A plain torchrun script on this machine sometimes aborts at interpreter exit under CPU
        # load ("terminate called without an active exception"), with or without nosync, after
        # its work is done: one more try then, any other failure fails at once.
        if "terminate called without an active exception" not in result.stderr:
            break
    return result


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    """Write ``array`` (uint8) as an IDX file, the format of MNIST and Fashion-MNIST."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def tiny_image_dataset(folder: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """A learnable 10-class, 28x28 IDX dataset: each class lights up its own image band."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 3, :] += 150
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def bn_model(seed: int) -> Any:
    """A tiny model with BatchNorm (float and integer buffers), initialised from ``seed``."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def train_steps(model: Any, opt: Any, steps: int, seed: int) -> None:
    """``steps`` SGD steps on random 4-feature, 3-class batches drawn from ``seed``."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def write_npz(
    path: Path,
    drop: str | None = None,
    short: str | None = None,
    nan: bool = False,
    label: int | None = None,
    n: int = 30,
) -> Path:
    """A small 3-class ``npz:`` dataset of 8x8 images; ``drop``/``short``/``nan``/``label``
    spoil it in one way each, for the bad-input tests."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.random((n, 8, 8)),
        "y_train": np.arange(n) % 3,
        "x_test": rng.random((10, 8, 8)),
        "y_test": rng.integers(0, 3, 10),
    }
    if drop:
        del arrays[drop]
    if short:
        arrays[short] = arrays[short][:5]
    if nan:
        arrays["x_train"][3, 2, 2] = np.nan
        arrays["x_test"][0, 0, 0] = np.inf
    if label is not None:
        arrays["y_train"][7] = label
    np.savez(path, **arrays)
    return path


def start_nosync(*args: str) -> subprocess.Popen[str]:
    """``python -m nosync ARGS`` in the background (the launcher process)."""
    return subprocess.Popen(
        [sys.executable, "-m", "nosync", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    out = []
    for child in _children(pid):
        out += [child, *descendants(child)]
    return out


def worker_pids(launcher: int) -> list[int]:
    """The training ranks the launcher started: the children of its fork server."""
    ranks = []
    for child in _children(launcher):
        try:
            if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
                ranks += _children(child)
        except OSError:
            continue
    return sorted(ranks)


def listeners(pids: list[int]) -> list[str]:
    """The TCP addresses (``IP:PORT``) on which any of ``pids`` listens, read from ``/proc``."""
    import ipaddress
    import os

    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            ip_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(ip_hex)  # each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(f"{ipaddress.ip_address(raw)}:{int(port_hex, 16)}")
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def checkpoint_step(out: Path) -> int | None:
    latest = out / "checkpoints" / "latest.json"
    try:
        return json.loads(latest.read_text())["step"]
    except (OSError, ValueError):
        return None


# A user's own pieces for --model/--dataset/--loss MODULE:CALLABLE: a GRU on a synthetic
# sequence task (which of three frequencies a noisy wave has), its own map-style dataset class
# and its own loss; plus pieces that are wrong in one way each, for the bad-input tests.
# The good pieces are examples/own_model.py (the docs' "your own model" example).
_WRONG_PIECES = '''

NOT_CALLABLE = 3


def not_a_module():
    return 42


def wrong_width():
    return nn.Linear(5, 3)


def frozen(input_shape, classes):
    net = nn.Sequential(nn.Flatten(), nn.LazyLinear(classes))
    net(torch.zeros(1, *input_shape))
    return net.requires_grad_(False)


def vector_loss(output, target):
    return F.cross_entropy(output, target, reduction="none")


def not_datasets():
    return 7


def eight_outputs(input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(24, 8))


def empty():
    return torch.zeros(0, 8), torch.zeros(0, dtype=torch.long), torch.randn(4, 8), torch.arange(4)


def _spoilt(where, value):
    x, y = torch.randn(40, 8), torch.arange(40) % 3
    x_test, y_test = torch.randn(12, 8), torch.arange(12) % 3
    (x if where == "train" else x_test)[3, 2] = value
    return x, y, x_test, y_test


def nan_train():
    return _spoilt("train", float("nan"))


def inf_test():
    return _spoilt("test", float("inf"))


def nan_waves():
    train = Waves(230, 0)
    train.x[5, 3, 1] = float("nan")  # map-style: found among the samples held as tensors
    return train, Waves(60, 1)


def inf_when_evaluated(output, target):
    """A finite training loss, but an infinite fitness (evaluated without gradients)."""
    if torch.is_grad_enabled():
        return F.cross_entropy(output, target)
    return torch.tensor(float("inf"))


def exits_when_called():
    import sys

    sys.exit(3)
'''
USER_MODULE = (ROOT / "examples" / "own_model.py").read_text() + _WRONG_PIECES


def write_user_module(folder: Path) -> Path:
    """``folder/mine.py`` with the pieces above; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mine.py"
    path.write_text(USER_MODULE)
    return path


def left_behind(folder: Path, **files: str) -> Path:
    """What a run that stopped before its first checkpoint leaves (its lock file, config.toml
    and metrics.jsonl), plus ``files``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {
        ".lock": "",
        "config.toml": "seed = 1\n",
        "metrics.jsonl": "",
        **files,
    }.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def back_to_checkpoint(out: Path, step: int) -> None:
    """Point a finished run's ``latest.json`` back at its checkpoint of ``step`` and remove its
    final files, as if it had stopped there: ``--resume`` then replays the rest."""
    folder = out / "checkpoints" / f"step-{step:09d}"
    assert folder.is_dir(), f"no checkpoint of step {step} (a run keeps its last two)"
    latest_path = out / "checkpoints" / "latest.json"
    latest = json.loads(latest_path.read_text())
    digests = {p.with_suffix(".pt").name: p.read_text().strip() for p in folder.glob("*.sha256")}
    latest.update(step=step, dir=folder.name, sha256=digests)
    latest_path.write_text(json.dumps(latest))
    for name in ("final.pt", "final.safetensors", "summary.json"):
        (out / name).unlink(missing_ok=True)
