"""Datasets from local files, the fitness split and per-particle batch order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nosync.data.datasets import Batches, find_idx_dir, fitness_split, load_dataset, read_idx
from nosync.errors import UserError

from support.helpers import tiny_image_dataset, write_idx, write_npz


def test_idx_round_trip_plain_and_gzipped(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (False, True):
        path = tmp_path / ("x.gz" if gz else "x")
        write_idx(path, images, gz=gz)
        assert np.array_equal(read_idx(path), images)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "not an IDX file"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x09abc", "corrupt"),
    ],
)
def test_corrupt_idx_is_a_clear_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(data)
    with pytest.raises(UserError, match=message):
        read_idx(path)


def test_idx_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tiny_image_dataset(tmp_path / "a"), tiny_image_dataset(tmp_path / "b" / "mnist")
    monkeypatch.setenv("NOSYNC_DATA", str(tmp_path / "b"))
    assert find_idx_dir("mnist", str(first)) == first  # --data-dir wins
    assert find_idx_dir("mnist", None) == second  # then $NOSYNC_DATA (or its <name>/)
    monkeypatch.setenv("NOSYNC_DATA", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="IDX files not found"):
        find_idx_dir("mnist", None)


def test_idx_dataset_loads_standardised(tmp_path: Path) -> None:
    ds = load_dataset("mnist", str(tiny_image_dataset(tmp_path)))
    assert ds.x_train.shape == (600, 1, 28, 28) and ds.x_test.shape == (200, 1, 28, 28)
    assert ds.classes == 10 and ds.y_train.dtype == torch.int64
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-3


def test_npz_dataset_and_its_errors(tmp_path: Path) -> None:
    ds = load_dataset(f"npz:{write_npz(tmp_path / 'good.npz', n=50)}")
    assert ds.input_shape == (1, 8, 8) and len(ds.y_train) == 50 and len(ds.y_test) == 10
    with pytest.raises(UserError, match="lacks the arrays y_test"):
        load_dataset(f"npz:{write_npz(tmp_path / 'missing.npz', drop='y_test')}")
    with pytest.raises(UserError, match="do not match"):
        load_dataset(f"npz:{write_npz(tmp_path / 'mismatched.npz', short='y_train')}")
    with pytest.raises(UserError, match="cannot read"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")


def test_fitness_split_is_fixed_disjoint_and_held_out() -> None:
    train, fit = fitness_split(1000, 0, seed=3)
    again_train, again_fit = fitness_split(1000, 0, seed=3)
    assert torch.equal(fit, again_fit) and torch.equal(train, again_train)
    assert len(fit) == 100 and len(train) == 900
    assert not set(fit.tolist()) & set(train.tolist())
    assert len(fitness_split(100_000, 0, seed=0)[1]) == 512  # capped


def test_batches_are_deterministic_and_differ_per_particle() -> None:
    a, b = (
        Batches(100, 10, 0, particle=0, particles=2),
        Batches(100, 10, 0, particle=1, particles=2),
    )
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.epoch(0), Batches(100, 10, 0, 0, 2).epoch(0), strict=True)
    )
    assert not torch.equal(a.epoch(0)[0], b.epoch(0)[0])
    assert not torch.equal(a.epoch(0)[0], a.epoch(1)[0])  # a new order every epoch
    assert torch.equal(a.epoch(3, start=4)[0], a.epoch(3)[4])  # resumable from a position


def test_shards_are_disjoint_and_hybrid_ranks_split_the_particle_batch() -> None:
    shards = [
        set(torch.cat(Batches(100, 5, 0, p, 4, shard=True).epoch(0)).tolist()) for p in range(4)
    ]
    assert all(len(s) == 25 for s in shards) and len(set().union(*shards)) == 100
    ranks = [Batches(100, 10, 0, 1, 2, ranks_per_particle=2, rank_in_particle=j) for j in (0, 1)]
    first = [r.epoch(0)[0] for r in ranks]
    assert not set(first[0].tolist()) & set(first[1].tolist())
    assert ranks[0].steps_per_epoch == 5
    with pytest.raises(UserError, match="batch_size"):
        Batches(10, 8, 0, 0, 1, ranks_per_particle=2)


def test_the_step_sampler_resumes_mid_epoch_with_the_batches_of_an_uninterrupted_run() -> None:
    from nosync.data.datasets import StepSampler

    batches = Batches(100, 8, 0, particle=1, particles=2)  # 12 steps per epoch
    whole = list(StepSampler(batches, 0, 30))
    assert len(whole) == 30 and whole[:12] == [b.tolist() for b in batches.epoch(0)]
    assert list(StepSampler(batches, 17, 30)) == whole[17:]  # epoch 1, batch 5 on
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.arange(100)),
        batch_sampler=StepSampler(batches, 17, 30),
    )
    assert [b[0].tolist() for b in loader] == whole[17:]


def test_an_explicit_data_dir_is_used_or_refused_never_replaced(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NOSYNC_DATA", str(tiny_image_dataset(tmp_path / "good")))
    partial = tiny_image_dataset(tmp_path / "partial")
    (partial / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(UserError, match=r"missing: t10k-images-idx3-ubyte\[.gz\]"):
        find_idx_dir("mnist", str(partial))
    with pytest.raises(UserError, match="is not a folder"):
        find_idx_dir("mnist", str(tmp_path / "typo"))
    nested = tiny_image_dataset(tmp_path / "root" / "mnist")
    assert find_idx_dir("mnist", str(tmp_path / "root")) == nested  # DIR/<name>/ is DIR too


def test_the_system_dataset_folder_is_the_last_place_looked(tmp_path, monkeypatch) -> None:
    import nosync.data.datasets as data

    monkeypatch.delenv("NOSYNC_DATA", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DATA", tmp_path)
    installed = tiny_image_dataset(tmp_path / "fashion-mnist")
    assert find_idx_dir("fashion-mnist", None) == installed
    with pytest.raises(UserError, match="is not a folder"):  # no fallback from a typo
        find_idx_dir("fashion-mnist", str(tmp_path / "fashion-mnist" / "typo"))
    monkeypatch.setattr(data, "SYSTEM_DATA", tmp_path / "nothing")
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        find_idx_dir("fashion-mnist", None)


SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_fashion_mnist_from_the_debian_package(monkeypatch) -> None:
    """CI installs ``dataset-fashion-mnist`` (.ci/run); there, this must run, not skip."""
    if not SYSTEM_FASHION.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI installs dataset-fashion-mnist; {SYSTEM_FASHION} is missing")
        pytest.skip(f"{SYSTEM_FASHION} is not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.delenv("NOSYNC_DATA", raising=False)
    assert find_idx_dir("fashion-mnist", None) == SYSTEM_FASHION
    data = load_dataset("fashion-mnist", None, train_subset=1000)
    assert data.classes == 10 and data.input_shape == (1, 28, 28)
    assert len(data.y_train) == 1000 and len(data.y_test) == 10_000


def test_digits_is_cached_after_the_first_load_and_a_bad_cache_is_reloaded(
    tmp_path: Path, monkeypatch
) -> None:
    """The cache (so that ranks need not import scikit-learn) holds the very same split, and a
    corrupt cache file is read past, not trusted."""
    import sys

    monkeypatch.setenv("NOSYNC_CACHE", str(tmp_path / "cache"))
    first = load_dataset("digits")
    (cached,) = (tmp_path / "cache").glob("digits-sklearn-*.npz")
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # importing it would now fail
    again = load_dataset("digits")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, key), getattr(again, key))
    cached.write_bytes(b"not an npz")
    monkeypatch.delitem(sys.modules, "sklearn.datasets")
    reloaded = load_dataset("digits")
    assert torch.equal(first.x_train, reloaded.x_train)
    with np.load(cached) as fixed:  # and the cache was written again, whole
        assert len(fixed["y_train"]) == len(first.y_train)
