"""Bring-your-own pieces: ``MODULE:CALLABLE`` specs for ``--model``, ``--dataset`` and ``--loss``.

This module owns importing a user's callable and checking what it returns, so that every
mistake is one :class:`~nosync.errors.UserError` line named after the flag.  ``MODULE`` is a
module importable from the current directory or ``PYTHONPATH`` (``mypkg.models:make``) or a
file path (``path/to/file.py:make``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset as TorchDataset

from nosync.errors import UserError


def is_spec(value: str) -> bool:
    """True for ``MODULE:CALLABLE`` (``npz:PATH`` is the built-in npz dataset, not a spec)."""
    return ":" in value and not value.startswith("npz:")


def load_callable(spec: str, flag: str) -> Callable[..., Any]:
    """Import ``MODULE:CALLABLE`` (``CALLABLE`` may be dotted: ``mod:Class.make``)."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise UserError(f"{flag}: {spec!r} is not of the form MODULE:CALLABLE")
    module = _import(module_name, flag)
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UserError(f"{flag}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"{flag}: {spec} is a {type(target).__name__}, not a callable")
    return target


def _import(name: str, flag: str) -> Any:
    try:
        if name.endswith(".py") or os.sep in name:
            path = Path(name).resolve()
            if not path.is_file():
                raise UserError(f"{flag}: no such file {name}")
            module_id = f"nosync_user_{abs(hash(str(path)))}"
            if module_id in sys.modules:
                return sys.modules[module_id]
            spec = importlib.util.spec_from_file_location(module_id, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_id] = module  # dataclasses and pickling look modules up here
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_id]
                raise
            return module
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # the console script does not put the cwd there
        return importlib.import_module(name)
    except UserError:
        raise
    except SystemExit as err:  # sys.exit() at import would end nosync silently
        raise UserError(f"{flag}: cannot import {name}: it called sys.exit({err.code!r})") from None
    except Exception as err:  # noqa: BLE001 - whatever the user's module raises on import
        raise UserError(f"{flag}: cannot import {name}: {type(err).__name__}: {err}") from None


def _call(fn: Callable[..., Any], args: tuple[Any, ...], flag: str) -> Any:
    try:
        return fn(*args)
    except UserError:
        raise
    except SystemExit as err:
        name = getattr(fn, "__name__", repr(fn))
        raise UserError(f"{flag}: {name}() called sys.exit({err.code!r})") from None
    except Exception as err:  # noqa: BLE001 - the user's code failed; say where
        name = getattr(fn, "__name__", repr(fn))
        raise UserError(f"{flag}: {name}() raised {type(err).__name__}: {err}") from None


def positional_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` accepts (``*args`` counts as many as offered)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: offer nothing
        return 0
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 1 << 30
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def make_model(spec: str, input_shape: tuple[int, ...], classes: int) -> nn.Module:
    """``--model MODULE:CALLABLE``: called with ``(input_shape, classes)``, as many of them as
    its signature takes (none, the shape, or both)."""
    fn = load_callable(spec, "model")
    offered = (tuple(input_shape), classes)
    model = _call(fn, offered[: positional_arity(fn)], "model")
    if not isinstance(model, nn.Module):
        raise UserError(f"model: {spec} returned a {type(model).__name__}, not a torch nn.Module")
    if not any(True for _ in model.parameters()):
        raise UserError(f"model: {spec} returned a module without parameters")
    return model


def make_loss(spec: str) -> Callable[[Tensor, Tensor], Tensor]:
    """``--loss MODULE:CALLABLE``: a function ``loss(output, target) -> scalar tensor``, or an
    ``nn.Module`` class taking no arguments (``torch.nn:CrossEntropyLoss``)."""
    fn = load_callable(spec, "loss")
    if isinstance(fn, type):
        if not issubclass(fn, nn.Module):
            raise UserError(f"loss: {spec} is a class but not an nn.Module")
        fn = _call(fn, (), "loss")
    return fn


UserData = tuple[TorchDataset | tuple[Tensor, Tensor], TorchDataset | tuple[Tensor, Tensor]]


def make_datasets(spec: str) -> UserData:
    """``--dataset MODULE:CALLABLE`` returns ``(train, test)``: two map-style datasets (whose
    items are ``(input, label)``), two ``(x, y)`` tensor pairs, or ``(x_train, y_train, x_test,
    y_test)`` tensors."""
    got = _call(load_callable(spec, "dataset"), (), "dataset")
    if isinstance(got, tuple | list) and len(got) == 4 and all(isinstance(t, Tensor) for t in got):
        got = ((got[0], got[1]), (got[2], got[3]))
    if not (isinstance(got, tuple | list) and len(got) == 2):
        raise UserError(
            f"dataset: {spec} returned a {type(got).__name__}; expected (train, test) datasets "
            "or (x_train, y_train, x_test, y_test) tensors"
        )
    return _one_split(spec, "train", got[0]), _one_split(spec, "test", got[1])


def _one_split(spec: str, split: str, part: Any) -> TorchDataset | tuple[Tensor, Tensor]:
    pair = isinstance(part, tuple | list) and len(part) == 2
    if pair and all(isinstance(t, Tensor) for t in part):
        x, y = part
        if len(x) != len(y):
            raise UserError(
                f"dataset: {spec}: {split} inputs {tuple(x.shape)} and labels {tuple(y.shape)} "
                "do not match (need N samples and N labels)"
            )
        if len(x) == 0:
            raise UserError(
                f"dataset: {spec}: the {split} set is empty (inputs {tuple(x.shape)}, labels "
                f"{tuple(y.shape)})"
            )
        return x, y
    if not (hasattr(part, "__getitem__") and hasattr(part, "__len__")):
        raise UserError(
            f"dataset: {spec}: the {split} part is a {type(part).__name__}, not a map-style "
            "torch.utils.data.Dataset (with __getitem__ and __len__) or an (x, y) tensor pair"
        )
    if len(part) == 0:
        raise UserError(f"dataset: {spec}: the {split} dataset is empty")
    return part


def sample(dataset: Any, index: int, spec: str) -> tuple[Tensor, Tensor]:
    """Item ``index`` of a user dataset as ``(input, label)`` tensors."""
    try:
        item = dataset[index]
    except Exception as err:  # noqa: BLE001 - the user's __getitem__ failed
        raise UserError(
            f"dataset: {spec}: item {index} raised {type(err).__name__}: {err}"
        ) from None
    if not (isinstance(item, tuple | list) and len(item) == 2):
        raise UserError(f"dataset: {spec}: items must be (input, label) pairs, got {item!r:.80}")
    x, y = (torch.as_tensor(v) for v in item)
    return x, y
