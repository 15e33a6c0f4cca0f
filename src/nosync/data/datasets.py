"""Datasets, the held-out fitness split and per-particle batch order (and its ``Sampler``).

Built-ins are read from local files (no run-time downloads) into in-memory tensors:
scikit-learn's bundled ``digits``, IDX files for ``fashion-mnist``/``mnist`` and user ``.npz``
archives.  A user's ``MODULE:CALLABLE`` dataset keeps its training part map-style (fed through a
``DataLoader``) and has its test part held as tensors for evaluation.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler, Subset, TensorDataset

from nosync import user
from nosync.core import seeds
from nosync.errors import UserError
from nosync.files import WriteFailed, atomic_write

DATASETS = ("digits", "fashion-mnist", "mnist")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES: dict[int, Any] = {
    0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8",
}  # fmt: skip


@dataclass
class Dataset:
    """Built-ins: images as float32 ``N x C x H x W`` (standardised with train statistics), int64
    labels.  A user dataset may hold its training part as a map-style ``train_set`` instead of
    ``x_train``/``y_train``; its test part is always tensors (evaluation runs over it often)."""

    name: str
    x_train: Tensor | None
    y_train: Tensor | None
    x_test: Tensor
    y_test: Tensor
    classes: int
    train_set: Any = None  # map-style training samples, when not in-memory tensors

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_test.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.y_train) if self.y_train is not None else len(self.train_set)


def check_dataset_name(name: str) -> None:
    if name in DATASETS or name.startswith("npz:") or user.is_spec(name):
        return
    raise UserError(
        f"dataset: unknown dataset {name!r} "
        f"(choose from {', '.join(DATASETS)}, npz:PATH, MODULE:CALLABLE)"
    )


def load_dataset(name: str, data_dir: str | None = None, train_subset: int = 0) -> Dataset:
    """Load a dataset by name; raises ``UserError`` with one clear line on any bad input."""
    check_dataset_name(name)
    if user.is_spec(name):
        return load_user_dataset(name, train_subset)
    if name == "digits":
        arrays = _digits()
    elif name.startswith("npz:"):
        arrays = read_npz(Path(name[4:]))
    else:
        folder = find_idx_dir(name, data_dir)
        arrays = {
            key: read_idx(cast(Path, _idx_path(folder, stem)))  # must_exist: a Path or raised
            for key, stem in IDX_FILES.items()
        }
        _check_arrays(arrays, f"{name} in {folder}")
    if train_subset and train_subset < len(arrays["y_train"]):
        keep = np.random.default_rng(0).permutation(len(arrays["y_train"]))[:train_subset]
        arrays["x_train"], arrays["y_train"] = arrays["x_train"][keep], arrays["y_train"][keep]
    return _to_tensors(name, arrays)


def _digits() -> dict[str, np.ndarray]:
    """scikit-learn's digits, split 80/20 (stratified, fixed seed).  The split is cached as an
    ``.npz`` (keyed by scikit-learn's version), because importing scikit-learn costs every rank
    and the launcher a second or two of CPU per run; a cache that cannot be read or written is
    ignored."""
    from importlib.metadata import version

    cache = _cache_dir() / f"digits-sklearn-{version('scikit-learn')}.npz"
    try:
        with np.load(cache) as saved:
            return {key: saved[key] for key in IDX_FILES}
    except (OSError, ValueError, KeyError):
        pass
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target
    )
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    try:  # written whole, then renamed: a concurrent reader sees all of it or nothing
        with atomic_write(cache) as handle:
            np.savez(handle, **arrays)
    except WriteFailed:
        pass  # a cache that cannot be written is only slower next time
    return arrays


def _cache_dir() -> Path:
    """``$NOSYNC_CACHE``, else ``$XDG_CACHE_HOME/nosync``, else ``~/.cache/nosync``."""
    if os.environ.get("NOSYNC_CACHE"):
        return Path(os.environ["NOSYNC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nosync"


SYSTEM_DATA = Path("/usr/share/datasets")  # where Debian's dataset-* packages install


def find_idx_dir(name: str, data_dir: str | None) -> Path:
    """``--data-dir`` (only it, when given), else ``$NOSYNC_DATA``, then
    ``/usr/share/datasets/<name>``.

    An explicit folder is used or refused with what it lacks: falling back to another copy would
    train on data the user did not name (and record the folder that was not used).
    """
    if data_dir:
        return _explicit_idx_dir(name, Path(data_dir))
    candidates: list[Path] = []
    root = os.environ.get("NOSYNC_DATA")
    if root:
        candidates += [Path(root), Path(root) / name]
    candidates.append(SYSTEM_DATA / name)
    for folder in candidates:
        if all(_idx_path(folder, stem, must_exist=False) for stem in IDX_FILES.values()):
            return folder
    where = ", ".join(str(c) for c in candidates)
    hint = " (on Debian: apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
    raise UserError(f"dataset: {name} IDX files not found in {where}{hint}")


def _explicit_idx_dir(name: str, root: Path) -> Path:
    if not root.is_dir():
        raise UserError(f"data_dir: {root} is not a folder")
    best, best_missing = root, list(IDX_FILES.values())
    for folder in (root, root / name):
        missing = [s for s in IDX_FILES.values() if not _idx_path(folder, s, must_exist=False)]
        if not missing:
            return folder
        if len(missing) < len(best_missing):
            best, best_missing = folder, missing
    raise UserError(
        f"dataset: {name} IDX files not found in --data-dir {best} (missing: "
        f"{', '.join(f'{m}[.gz]' for m in best_missing)})"
    )


def _idx_path(folder: Path, stem: str, must_exist: bool = True) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    if must_exist:
        raise UserError(f"dataset: missing {folder / stem}[.gz]")
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), checking its header against its size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise UserError(f"dataset: cannot read {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] < 1:
        raise UserError(f"dataset: {path} is not an IDX file (bad header)")
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"dataset: {path} has a truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise UserError(
            f"dataset: {path} is corrupt (header says {shape}, {expected} bytes; "
            f"file has {len(raw)})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """An ``.npz`` with ``x_train, y_train, x_test, y_test`` (images N x H x W or N x C x H x W)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in IDX_FILES if k not in archive.files]
            if missing:
                raise UserError(f"dataset: {path} lacks the arrays {', '.join(missing)}")
            arrays = {k: archive[k] for k in IDX_FILES}
    except UserError:
        raise
    except (OSError, ValueError) as err:
        raise UserError(f"dataset: cannot read {path}: {err}") from None
    _check_arrays(arrays, str(path))
    return arrays


def _check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim not in (2, 3, 4) or y.ndim != 1 or len(x) != len(y):
            raise UserError(
                f"dataset: {where}: x_{split} {x.shape} and y_{split} {y.shape} do not match "
                "(need N samples and N labels)"
            )
        if len(x) == 0:
            raise UserError(f"dataset: {where}: the {split} set is empty (x_{split} {x.shape})")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise UserError(f"dataset: {where}: y_{split} must hold non-negative integer labels")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise UserError(f"dataset: {where}: x_{split} must hold numbers, not {x.dtype}")
        check_finite(x, where, f"x_{split}")
    _check_labels(arrays, where)
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise UserError(
            f"dataset: {where}: train images {arrays['x_train'].shape[1:]} and test images "
            f"{arrays['x_test'].shape[1:]} differ in shape"
        )


def check_finite(x: np.ndarray | Tensor, where: str, name: str) -> None:
    """Inputs hold no NaN or infinity: one would make every particle diverge (and a NaN in the
    test set would hide in the accuracy).  The same check for ``npz:`` arrays and a user's
    tensors."""
    if isinstance(x, Tensor):
        bad = int((~torch.isfinite(x)).sum()) if x.is_floating_point() or x.is_complex() else 0
    else:
        bad = int((~np.isfinite(x)).sum()) if np.issubdtype(x.dtype, np.inexact) else 0
    if bad:
        raise UserError(f"dataset: {where}: {name} holds {bad} NaN or infinite values")


def _check_labels(arrays: dict[str, np.ndarray], where: str) -> None:
    """Labels are 0..C-1, C the number of classes (the model gets C outputs).  C is inferred as
    the largest label + 1, so most of 0..C-1 must occur: a stray label of 100000 among ten
    classes would otherwise build a 100001-class model."""
    labels = np.concatenate([arrays["y_train"], arrays["y_test"]])
    classes = int(labels.max()) + 1
    seen = len(np.unique(labels))
    if classes > 2 * seen:
        raise UserError(
            f"dataset: {where}: labels go up to {classes - 1} but only {seen} distinct values "
            f"occur; labels must be the classes 0..C-1"
        )


def _to_tensors(name: str, arrays: dict[str, np.ndarray]) -> Dataset:
    def images(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        if x.ndim == 2:  # flat feature vectors: one channel, one row
            x = x[:, None, None, :]
        elif x.ndim == 3:
            x = x[:, None]
        return x

    x_train, x_test = images(arrays["x_train"]), images(arrays["x_test"])
    mean, std = float(x_train.mean()), float(x_train.std()) or 1.0
    classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    return Dataset(
        name=name,
        x_train=torch.from_numpy((x_train - mean) / std),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=torch.from_numpy((x_test - mean) / std),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        classes=classes,
    )


def load_user_dataset(spec: str, train_subset: int = 0) -> Dataset:
    """``--dataset MODULE:CALLABLE``: tensors stay tensors (the fast path); a map-style training
    set stays map-style; the test set is stacked into tensors once."""
    train, test = user.make_datasets(spec)
    x_test, y_test = (
        test if isinstance(test, tuple) else stack(test, range(len(cast(Sized, test))), spec)
    )
    x_train, y_train, train_set = None, None, None
    if isinstance(train, tuple):
        x_train, y_train = train
    elif _tensor_pair(train):
        x_train, y_train = cast(TensorDataset, train).tensors
    else:
        train_set = train
    n = len(y_train) if y_train is not None else len(cast(Sized, train_set))
    if train_subset and train_subset < n:
        keep = torch.from_numpy(np.random.default_rng(0).permutation(n)[:train_subset])
        if x_train is not None and y_train is not None:
            x_train, y_train = x_train[keep], y_train[keep]
        else:
            train_set = Subset(cast(TorchDataset, train_set), keep.tolist())
    for split, inputs, labels in (("test", x_test, y_test), ("train", x_train, y_train)):
        if labels is not None and (labels.ndim != 1 or labels.is_floating_point()):
            raise UserError(
                f"dataset: {spec}: {split} labels must be integer class indices, one per sample "
                f"(got {labels.dtype} of shape {tuple(labels.shape)})"
            )
        if inputs is not None:  # None: a map-style set (build.task checks what it stacks)
            check_finite(inputs, spec, f"the {split} input tensor")
    return Dataset(
        spec, x_train, y_train, x_test, y_test, _classes(spec, train, y_train, y_test), train_set
    )


def _tensor_pair(dataset: Any) -> bool:
    return isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) == 2


def stack(dataset: Any, indices: Any, spec: str) -> tuple[Tensor, Tensor]:
    """Samples ``indices`` of a map-style dataset as ``(inputs, labels)`` tensors."""
    if _tensor_pair(dataset):
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return dataset.tensors[0][idx], dataset.tensors[1][idx]
    items = [user.sample(dataset, int(i), spec) for i in indices]
    try:
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])
    except RuntimeError as err:
        raise UserError(f"dataset: {spec}: samples differ in shape ({err})") from None


def _classes(spec: str, train: Any, y_train: Tensor | None, y_test: Tensor) -> int:
    """A ``classes`` (int or list of names) or ``num_classes`` attribute of the training set,
    else one more than the largest label (a map-style set is scanned once for it)."""
    for attr in ("classes", "num_classes"):
        value = getattr(train, attr, None)
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, list | tuple) and value:
            return len(value)
    if y_train is None:
        y_train = torch.stack([user.sample(train, i, spec)[1] for i in range(len(train))])
    if int(y_test.min()) < 0 or int(y_train.min()) < 0:
        raise UserError(f"dataset: {spec}: labels must be non-negative class indices")
    return int(max(y_train.max(), y_test.max())) + 1


def fitness_split(n: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices ``(train, fitness)``: a fixed held-out fitness set, the same on every particle.

    ``size`` 0 means automatic: a tenth of the training set, at most 512 examples (a larger set
    makes each sync round cost more than the pull itself).
    """
    size = size or min(512, n // 10)
    if not 0 < size < n:
        raise UserError(f"fitness_size: {size} does not leave training data out of {n} examples")
    order = torch.randperm(n, generator=seeds.generator(seeds.fitness_split(seed)))
    return order[size:].sort().values, order[:size].sort().values


class Batches:
    """A particle's deterministic stream of mini-batch indices.

    Epoch ``e`` of particle ``p`` is a permutation drawn from a generator seeded by
    ``(seed, p, e)``, so the position in the stream is just ``(epoch, batch)`` and can be
    checkpointed and resumed exactly.  With ``--shard`` every particle owns a disjoint slice of
    the data.  Inside a data-parallel particle of ``k`` ranks, rank ``j`` takes the ``j``-th slice
    of each particle batch of ``k * batch_size`` examples.  Incomplete batches are dropped, so all
    particles take the same number of steps per epoch.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        particle: int,
        particles: int,
        *,
        shard: bool = False,
        ranks_per_particle: int = 1,
        rank_in_particle: int = 0,
    ) -> None:
        self.seed, self.particle = seed, particle
        self.batch_size, self.k, self.j = batch_size, ranks_per_particle, rank_in_particle
        if shard and particles > 1:
            order = torch.randperm(n, generator=seeds.generator(seeds.shard(seed)))
            per = n // particles
            self.pool = order[particle * per : (particle + 1) * per].sort().values
        else:
            self.pool = torch.arange(n)
        self.steps_per_epoch = len(self.pool) // (batch_size * ranks_per_particle)
        if self.steps_per_epoch < 1:
            raise UserError(
                f"batch_size: {batch_size} x {ranks_per_particle} rank(s) exceeds the "
                f"{len(self.pool)} training examples a particle has"
            )

    def epoch(self, epoch: int, start: int = 0) -> list[Tensor]:
        """The index batches of one epoch for this rank, from batch ``start`` on."""
        g = seeds.generator(seeds.batch_order(self.seed, self.particle, epoch))
        perm = self.pool[torch.randperm(len(self.pool), generator=g)]
        big = self.batch_size * self.k
        out = []
        for b in range(start, self.steps_per_epoch):
            chunk = perm[b * big : (b + 1) * big]
            out.append(chunk[self.j * self.batch_size : (self.j + 1) * self.batch_size])
        return out

    def stream(self, start: int, total: int) -> Iterator[Tensor]:
        """The index batch of every step from ``start`` (mid-epoch is fine) to ``total``."""
        step = start
        while step < total:
            epoch, b = divmod(step, self.steps_per_epoch)
            for idx in self.epoch(epoch, b):
                if step >= total:
                    return
                yield idx
                step += 1


class StepSampler(Sampler[list[int]]):
    """:class:`Batches` as a ``DataLoader`` batch sampler that starts at a given step, so a
    resumed run continues mid-epoch with exactly the batches it would have had."""

    def __init__(self, batches: Batches, start: int, total: int) -> None:
        self.batches, self.start, self.total = batches, start, total

    def __iter__(self) -> Iterator[list[int]]:
        return (idx.tolist() for idx in self.batches.stream(self.start, self.total))

    def __len__(self) -> int:
        return max(0, self.total - self.start)
