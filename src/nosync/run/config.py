"""The run configuration: one dataclass, read from TOML, overridden by flags, checked once.

Every field is a ``nosync train`` flag (``batch_size`` is ``--batch-size``) and a key of the TOML
file; the help text lives next to the field so that flags, files and docs cannot drift apart.
"Automatic" is ``None``, as in the API (``Swarm(outer_lr=None, delay=None)``): TOML has no null,
so there it is an absent key or ``"auto"``, as on the command line (``--delay auto``).  Old
spellings (``compat.py``: a renamed key, ``delay = -1``) still work, with one warning each.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from nosync.core import catalog, selection
from nosync.core.topology import TOPOLOGIES
from nosync.data.datasets import check_dataset_name
from nosync.errors import UserError
from nosync.run.compat import AUTO, RENAMED, upgrade
from nosync.run.devices import DEVICES, PRECISIONS
from nosync.run.faults import Fault as Fault  # (its old home: the names still import from here)
from nosync.run.faults import check_ranks
from nosync.run.faults import parse_inject as parse_inject
from nosync.run.models import MODELS
from nosync.run.strategies.names import STRATEGIES, SWARMS
from nosync.user import is_spec

OPTIMIZERS = ("sgd", "adam", "adamw")
EXPLOIT_EVERY = 10  # rounds between exploit steps (issue 19's grid, RESULTS)
LOGGERS = ("none", "tensorboard")


class OrSpec(tuple):
    """Named choices that also admit any ``MODULE:CALLABLE`` (a user's own); argparse and
    :func:`validate` test membership with ``in``, so a typo still fails as an invalid choice."""

    def __contains__(self, value: object) -> bool:
        return super().__contains__(value) or (isinstance(value, str) and is_spec(value))


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    strategy: str = _f("nosync", "training strategy", STRATEGIES)
    workers: int = _f(0, "number of ranks (default 4, or 1 for --strategy single)")
    ranks_per_particle: int = _f(1, "ranks per particle; >1 makes each particle a DDP group")
    rule: str = _f("leader", "pull rule of the sync round", catalog.choices())
    pressure: float = _f(0.3, "pull strength p in [0, 1]")
    schedule: str = _f("constant", "pressure schedule (linear ramps p to 1)", catalog.SCHEDULES)
    period: int = _f(25, "optimizer steps between sync rounds")
    inertia: float = _f(0.5, "pso: velocity inertia")
    c1: float = _f(0.5, "pso: pull toward the particle's own best")
    c2: float = _f(2.0, "pso: pull toward the leader (scaled by the pressure)")
    easgd_beta: float = _f(0.9, "easgd: moving rate beta; each round alpha = beta / particles")
    temperature: float = _f(1.0, "weighted: T of the weights softmax(-fitness / T)")
    outer_lr: float | None = _f(
        None,
        "outer (Nesterov) step size, SlowMo's alpha: diloco (auto: 0.7), or for the leader, "
        "elastic and weighted rules instead of the pressure (auto: the pressure)",
    )
    outer_momentum: float | None = _f(
        None,
        "outer momentum in [0, 1), SlowMo's beta: diloco (auto: 0.9), or the leader, elastic and "
        "weighted rules' pull as a Nesterov step (auto: 0, a plain pull)",
    )
    diversity: bool = _f(
        False, "each particle trains with its own label smoothing in [0, 0.1] (seeded)"
    )
    explore: str = _f(
        "",
        "population based training inside the swarm: each particle trains with its own "
        "hyperparameters, NAME=LOW..HIGH[:log],... (lr, weight_decay, momentum, label_smoothing, "
        "beta1, beta2), spread one stratum per particle; the worst copy the best and perturb",
    )
    exploit_every: int = _f(
        EXPLOIT_EVERY, "explore: rounds between exploit steps (0: never, a sweep in one run)"
    )
    exploit_quantile: float = _f(
        0.25, "explore: the bottom share of the ranking copies the top share, in (0, 0.5]"
    )
    explore_factors: str = _f(
        "0.8,1.25", "explore: a copied value is multiplied by one of these factors ..."
    )
    explore_resample: float = _f(
        0.25, "explore: ... or, with this probability, drawn again from its range"
    )
    replay: str = _f(
        "",
        "retrain on the winner's schedule of the --explore run in this folder (its values by "
        "step), with --strategy single or localsgd",
    )
    select: str = _f(
        "best",
        "nosync: the model the swarm returns: best particle, weight average, or greedy soup",
        selection.SELECTS,
    )
    topology: str = _f(
        "all", "whom a particle compares with: everyone, a ring, k random others", TOPOLOGIES
    )
    neighbors: int = _f(2, "random-k: the k in-neighbours drawn each round")
    wire_dtype: str = _f(
        "float32",
        "dtype of weights sent in sync rounds (bfloat16 halves bytes; was --exchange)",
        ("float32", "bfloat16", "float16"),
    )
    round: str = _f(
        "async",
        "rounds: blocking (training waits for them) or async (training goes on; the pull lands "
        "--delay steps later as a correction)",
        ("blocking", "async"),
    )
    delay: int | None = _f(
        None, "async rounds: steps from a round's start to its pull (auto: period / 5)"
    )
    fitness: str = _f(
        "train-loss",
        "a particle's fitness: loss on the held-out fitness set, or its mean training loss "
        "since the last round (free)",
        ("held-out", "train-loss"),
    )
    stragglers: str = _f(
        "wait",
        "nosync: a fast rank waits for a slow one (wait), or a slow rank skips batches to keep "
        "the swarm's fastest pace (skip: no waiting, not reproducible)",
        ("wait", "skip"),
    )
    dataset: str = _f(
        "digits",
        "digits (images 1x8x8), fashion-mnist or mnist (1x28x28), 10 classes each; npz:PATH; "
        "or your own: MODULE:CALLABLE or FILE.py:CALLABLE",
    )
    data_dir: str = _f("", "folder with IDX files (then $NOSYNC_DATA, /usr/share/datasets)")
    train_subset: int = _f(0, "use only this many training examples (0: all)")
    fitness_size: int = _f(0, "held-out fitness examples (0: a tenth of train, at most 512)")
    shard: bool = _f(False, "give each particle a disjoint shard of the training data")
    model: str = _f(
        "mlp", "mlp or cnn, or your own: MODULE:CALLABLE or FILE.py:CALLABLE", OrSpec(MODELS)
    )
    init: str = _f("same", "initialise particles identically or differently", ("same", "different"))
    epochs: float = _f(10.0, "passes over each particle's training data")
    steps: int = _f(0, "optimizer steps per rank (overrides --epochs when > 0)")
    batch_size: int = _f(32, "mini-batch per rank")
    lr: float = _f(0.05, "learning rate (per rank, before scaling)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(0.0, "SGD weight decay")
    lr_schedule: str = _f(
        "cosine",
        "learning rate over training: cosine decay to 0, or constant",
        ("cosine", "constant"),
    )
    lr_scaling: str = _f(
        "linear", "data-parallel particles: scale lr with ranks per particle", ("linear", "none")
    )
    # ---- bring your own: optimizer, loss, data loading, loggers ----
    optimizer: str = _f("sgd", "optimizer", OPTIMIZERS)
    betas: str = _f("0.9,0.999", "adam/adamw: beta1,beta2")
    eps: float = _f(1e-8, "adam/adamw: epsilon")
    loss: str = _f(
        "cross_entropy",
        "training (and fitness) loss: cross_entropy, or your own: MODULE:CALLABLE or "
        "FILE.py:CALLABLE",
    )
    loader_workers: int = _f(
        0, "DataLoader worker processes for a map-style --dataset (0: in the training process)"
    )
    logger: str = _f("none", "also log to TensorBoard (pip install 'nosync[tensorboard]')", LOGGERS)
    seed: int = _f(0, "random seed")
    eval_every: int = _f(0, "evaluate every N steps (0: once per epoch)")
    threads: int = _f(0, "torch threads per rank (0: $OMP_NUM_THREADS, else cores / local ranks)")
    # ---- devices (devices.py) ----
    device: str = _f("auto", "where ranks compute (auto: cuda:LOCAL_RANK, else cpu)", DEVICES)
    precision: str = _f("fp32", "forward and loss under autocast: fp32 or bf16", PRECISIONS)
    compile: bool = _f(False, "torch.compile the model")
    timeout: float = _f(300.0, "seconds a collective may wait before the run fails")
    checkpoint_every: int = _f(
        20, "checkpoint every N sync rounds (N x period steps); 0: at the end only"
    )
    resume: str = _f("", "continue the run in this folder from its last checkpoint")
    max_restarts: int = _f(0, "restart the workers from the last checkpoint up to N times")
    inject: str = _f(
        "",
        "fault injection for tests: nan@STEP:RANK (NaN weights), slow@RANK:FACTOR "
        "(a straggler)[,...] (repeatable)",
    )
    port: int = _f(0, "local rendezvous port (0: any free port)")
    out: str = _f("", "output folder (default runs/<time>-<strategy>)")
    quiet: bool = _f(False, "no progress bar")
    verbose: bool = _f(
        False, "on a failure, print full tracebacks (ours and torch's) after the one-line reason"
    )

    @property
    def particles(self) -> int:
        return self.workers // self.ranks_per_particle

    @property
    def exchange(self) -> str:
        """Deprecated name of :attr:`wire_dtype`."""
        warnings.warn(
            "TrainConfig.exchange is deprecated; use wire_dtype", DeprecationWarning, stacklevel=2
        )
        return self.wire_dtype

    def to_dict(self) -> dict[str, Any]:
        """Every field, and each renamed one under its old name too (what outputs record: a
        checkpoint's, a model's and ``config.toml``'s readers may look for either)."""
        new_to_old = {new: old for old, new in RENAMED.items()}
        values: dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            values[name] = value
            if name in new_to_old:
                values[new_to_old[name]] = value
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The configuration :meth:`to_dict` wrote (no warnings: the old names are its own)."""
        return cls(**upgrade(values, warn=False))

    def to_toml(self) -> str:
        """TOML has no null: an automatic setting is written ``"auto"``."""
        return tomli_w.dumps({k: AUTO if v is None else v for k, v in self.to_dict().items()})


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def kind(name: str) -> tuple[str, bool]:
    """A field's type as text (postponed annotations) and whether it may be automatic (None)."""
    text = str(FIELDS[name].type)
    return text.removesuffix(" | None"), text.endswith(" | None")


def parser_of(name: str) -> Callable[[str], Any]:
    """Text (a flag's value, a compare label's setting) -> the field's value; ``auto`` is None
    where the field may be automatic.  Raises ValueError; named for argparse's message."""
    base, optional = kind(name)
    convert = {"int": int, "float": float, "str": str}[base]

    def parse(text: str) -> Any:
        return None if optional and text == AUTO else convert(text)

    parse.__name__ = f"{base} (or {AUTO})" if optional else base
    return parse


def read_toml(path: str, warn: bool = True) -> dict[str, Any]:
    """Read a config file; unknown keys and wrong types are errors, not silently ignored.

    Old spellings are upgraded (:func:`upgrade`); ``warn=False`` for a run's own
    ``config.toml``, which an older nosync wrote, not the user.
    """
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"config: no such file {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"config: {path} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise UserError(
            f"config: {path} is not UTF-8 text (byte {err.start}); TOML files must be UTF-8"
        ) from None
    except OSError as err:
        raise UserError(f"config: cannot read {path}: {err.strerror}") from None
    for key, value in data.items():
        if RENAMED.get(key, key) not in FIELDS:
            raise UserError(f"config: unknown key {key!r} in {path}")
        data[key] = _coerce(RENAMED.get(key, key), value, f"config: {path}: {key}")
    return upgrade(data, path, warn)


def _coerce(key: str, value: Any, where: str) -> Any:
    if key == "explore" and isinstance(value, dict):  # the TOML form: a table of ranges
        from nosync.core.explore import Space

        try:
            return Space.of(value).text()
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
    base, optional = kind(key)
    if optional and value == AUTO:
        return None
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[base]
    if not ok:
        expected = f'{base} or "{AUTO}"' if optional else base
        raise UserError(f"{where} must be {expected}, got {value!r}")
    return float(value) if base == "float" else value


def resolve(
    file_values: dict[str, Any], flag_values: dict[str, Any], under_launcher: bool = False
) -> TrainConfig:
    """Defaults, then the TOML file, then flags; then fill automatic values and validate.

    A flag that does nothing in the mode chosen (:func:`unused`, e.g. ``--delay`` with
    ``--round blocking``) is refused; the same value from the file is left to
    :func:`drop_unused`.  Under an external launcher the automatic worker count is the
    launcher's world size.
    """
    flag_values = upgrade(flag_values)
    given = {**upgrade(file_values, "TOML values"), **flag_values}
    if given.get("workers", 1) < 1:
        raise UserError(f"workers: must be at least 1, got {given['workers']}")
    cfg = TrainConfig(**given)
    if cfg.workers == 0:
        if under_launcher:
            cfg.workers = int(os.environ.get("WORLD_SIZE", "1"))
        else:
            cfg.workers = 1 if cfg.strategy == "single" else 4
    if cfg.strategy == "ddp" and cfg.ranks_per_particle == 1:
        cfg.ranks_per_particle = cfg.workers
    diloco = cfg.strategy == "diloco"  # automatic outer settings: DiLoCo's, or no outer step
    if cfg.outer_lr is None and diloco:
        cfg.outer_lr = 0.7
    if cfg.outer_momentum is None:
        cfg.outer_momentum = 0.9 if diloco else 0.0
    if not cfg.out:
        cfg.out = str(Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.strategy}")
    validate(cfg)
    for name, why in unused(cfg).items():
        if name in flag_values:  # given on purpose and would do nothing: a mistake
            raise UserError(f"{name}: {why}")
    return cfg


def _no(mode: str, where: str) -> str:
    return f"does nothing with {mode} (it is for {where})"


def unused(cfg: TrainConfig) -> dict[str, str]:
    """The settings at other than their default that do nothing in ``cfg``'s mode, each with
    why, in field order.  :func:`resolve` refuses such a flag; a value from a TOML file (one file
    may serve several modes, as compare's shared settings do) is dropped by :func:`drop_unused`.
    """
    s, rule = cfg.strategy, cfg.rule
    why: dict[str, str] = {}
    if s != "nosync":
        for name in ("rule", "inertia", "c1", "c2", "temperature", "pressure", "schedule"):
            why[name] = _no(f"--strategy {s}", "--strategy nosync")
        if s == "easgd":
            why["pressure"] = why["schedule"] = _no(
                "--strategy easgd", "--strategy nosync; easgd pulls at --easgd-beta / particles"
            )
    else:
        if rule != "pso":
            why |= dict.fromkeys(("inertia", "c1", "c2"), _no(f"--rule {rule}", "--rule pso"))
        if rule != "weighted":
            why["temperature"] = _no(f"--rule {rule}", "--rule weighted")
        if rule == "none":
            why["pressure"] = why["schedule"] = "does nothing with --rule none (it pulls nothing)"
    if s != "easgd":
        why["easgd_beta"] = _no(f"--strategy {s}", "--strategy easgd")
    if s not in SWARMS:
        for name in ("round", "delay", "fitness"):
            why[name] = _no(f"--strategy {s}", "the swarm strategies nosync and easgd")
    elif cfg.round == "blocking":
        why["delay"] = _no("--round blocking", "--round async")
    elif s == "nosync" and rule == "none":
        why["delay"] = "does nothing with --rule none (it pulls nothing, so no pull is delayed)"
    if s in ("single", "ddp"):
        why["diversity"] = (
            f"does not apply to --strategy {s}: one particle has no others to differ from (it "
            "would only train with a random label smoothing)"
        )
    explore_keys = ("exploit_every", "exploit_quantile", "explore_factors", "explore_resample")
    if s != "nosync":
        for name in ("explore", *explore_keys):
            why[name] = (
                f"does nothing with --strategy {s} (it is for --strategy nosync: a swarm that "
                "compares its particles; the others train one shared set of hyperparameters)"
            )
    elif not cfg.explore:
        for name in explore_keys:
            why[name] = _no("no --explore", "--explore")
    if cfg.topology != "random-k":
        why["neighbors"] = _no(f"--topology {cfg.topology}", "--topology random-k")
    if cfg.optimizer in ("adam", "adamw"):
        why["momentum"] = _no(f"--optimizer {cfg.optimizer}", "sgd; adam's are --betas")
    else:
        why["betas"] = why["eps"] = _no(f"--optimizer {cfg.optimizer}", "adam and adamw")
    return {
        name: why[name]
        for name in FIELDS
        if name in why and getattr(cfg, name) != FIELDS[name].default
    }


def drop_unused(cfg: TrainConfig) -> list[str]:
    """Set what :func:`unused` names back to its default (so that ``config.toml`` records what
    the run does); returns one line per setting dropped."""
    dropped = []
    for name, why in unused(cfg).items():
        dropped.append(f"{name} = {getattr(cfg, name)!r} {why}; not used")
        setattr(cfg, name, FIELDS[name].default)
    return dropped


def advice(cfg: TrainConfig) -> list[str]:
    """Settings that work but are known to defeat their purpose: one line each, said as a
    warning (measured in RESULTS)."""
    lines = []
    if cfg.explore and cfg.fitness == "train-loss" and cfg.strategy == "nosync":
        from nosync.core.explore import Space

        if "label_smoothing" in Space.parse(cfg.explore).names:
            lines.append(
                "explore: label_smoothing is judged by --fitness train-loss, a loss that grows "
                "with it, so the copies drive it to the bottom of its range (RESULTS §17); "
                "--fitness held-out judges it on held-out data"
            )
    return lines


def validate(cfg: TrainConfig) -> None:
    """One clear ``UserError`` per mistake, named after the flag; one check per concern."""
    _check_values(cfg)
    check_dataset_name(cfg.dataset)
    _check_world(cfg)
    _check_swarm_options(cfg)
    _check_numbers(cfg)
    check_ranks(cfg.inject, cfg.workers)
    _check_your_own(cfg)
    _check_explore(cfg)


def _check_explore(cfg: TrainConfig) -> None:
    """``--explore``: its ranges, the swarm it needs, and what the optimizer and loss hold;
    ``--replay``: the strategies that train one schedule."""
    if cfg.replay and (cfg.explore or cfg.strategy not in ("single", "localsgd")):
        raise UserError(
            "replay: retrains one schedule with --strategy single or localsgd (not "
            f"{'--explore' if cfg.explore else '--strategy ' + cfg.strategy})"
        )
    if cfg.replay:
        load_schedule(cfg.replay)  # refused here, before any worker starts
    if not cfg.explore:  # (another strategy than nosync: unused, refused or dropped there)
        return
    from nosync.core.explore import Space, check_quantile

    try:
        space = Space.parse(cfg.explore)
        check_quantile(cfg.exploit_quantile)
        factors = [float(f) for f in cfg.explore_factors.split(",")]
    except ValueError as err:
        raise UserError(str(err).replace("explore factors", "explore_factors")) from None
    if not factors or min(factors) <= 0:
        raise UserError(f"explore_factors: must be positive numbers, got {cfg.explore_factors!r}")
    if not 0 <= cfg.explore_resample <= 1 or cfg.exploit_every < 0:
        bad = "explore_resample" if not 0 <= cfg.explore_resample <= 1 else "exploit_every"
        raise UserError(f"{bad}: invalid value {getattr(cfg, bad)!r}")
    info = catalog.RULES[cfg.rule]
    if info.needs != "none" and not info.needs_fitness:  # a pull blind to fitness: elastic
        raise UserError(
            f"explore: --rule {cfg.rule} pulls every particle toward the mean of all, so one "
            "whose hyperparameters make it diverge drags the swarm along (measured: RESULTS "
            "§17); use leader, weighted or none"
        )
    adam = cfg.optimizer in ("adam", "adamw")
    for name in space.names:
        if name in ("beta1", "beta2") and not adam:
            raise UserError(f"explore: {name} needs --optimizer adam or adamw")
        if name == "label_smoothing" and (cfg.loss != "cross_entropy" or cfg.diversity):
            raise UserError("explore: label_smoothing needs --loss cross_entropy, not --diversity")


def load_schedule(run: str) -> list[dict[str, Any]]:
    """The winner's schedule an ``--explore`` run's ``summary.json`` holds (``--replay RUN``)."""
    path = Path(run) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"replay: {run} holds no finished run (no summary.json)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"replay: cannot read {path}: {err}") from None
    explore = summary.get("explore") if isinstance(summary, dict) else None
    schedule = explore.get("schedule") if isinstance(explore, dict) else None
    if not schedule:
        raise UserError(f"replay: {run} is not a finished --explore run (no winner's schedule)")
    return list(schedule)


def _check_values(cfg: TrainConfig) -> None:
    """Every number is finite and every named choice is one of the field's."""
    for name in FIELDS:
        value = getattr(cfg, name)
        if kind(name)[0] == "float" and value is not None and not math.isfinite(value):
            raise UserError(f"{name}: must be a finite number, got {value}")
    for name, f in FIELDS.items():
        choices = f.metadata["choices"]
        if choices and getattr(cfg, name) not in choices:
            raise UserError(
                f"{name}: unknown {name} {getattr(cfg, name)!r} (choose from {', '.join(choices)})"
            )


def _check_world(cfg: TrainConfig) -> None:
    """Ranks, particles, and what the strategy allows of them."""
    if cfg.workers < 1:
        raise UserError(f"workers: must be at least 1, got {cfg.workers}")
    if cfg.ranks_per_particle < 1 or cfg.workers % cfg.ranks_per_particle:
        raise UserError(
            f"ranks_per_particle: {cfg.ranks_per_particle} must be >= 1 and divide "
            f"workers ({cfg.workers})"
        )
    if cfg.strategy == "single" and cfg.workers != 1:
        raise UserError(f"workers: the single strategy runs one worker, got {cfg.workers}")
    if cfg.strategy == "ddp" and cfg.ranks_per_particle != cfg.workers:
        raise UserError("ranks_per_particle: ddp makes all workers one particle; leave it unset")
    if cfg.topology != "all" and (cfg.strategy != "nosync" or catalog.sums(cfg.rule)):
        *most, last = catalog.local_rules()
        raise UserError(
            f"topology: {cfg.topology} needs --strategy nosync with the {', '.join(most)} or "
            f"{last} rule"
        )
    if cfg.stragglers == "skip" and (cfg.strategy != "nosync" or cfg.ranks_per_particle > 1):
        raise UserError(
            "stragglers: skip needs --strategy nosync with one rank per particle (ddp, localsgd "
            "and a particle's own DDP group are synchronous by design)"
        )


def _check_numbers(cfg: TrainConfig) -> None:
    """Counts, sizes and rates in their ranges."""
    checks = {
        "period": cfg.period >= 1,
        "batch_size": cfg.batch_size >= 1,
        "epochs": cfg.epochs > 0 or cfg.steps > 0,
        "steps": cfg.steps >= 0,
        "lr": cfg.lr > 0,
        "momentum": 0 <= cfg.momentum < 1,
        "weight_decay": cfg.weight_decay >= 0,
        "train_subset": cfg.train_subset >= 0,
        "fitness_size": cfg.fitness_size >= 0,
        "eval_every": cfg.eval_every >= 0,
        "threads": cfg.threads >= 0,
        "timeout": cfg.timeout > 0,
        "easgd_beta": 0 < cfg.easgd_beta <= 1,
        "neighbors": cfg.neighbors >= 1,
        "delay": cfg.delay is None or cfg.delay >= 0,
        "checkpoint_every": cfg.checkpoint_every >= 0,
        "max_restarts": cfg.max_restarts >= 0,
        "port": 0 <= cfg.port < 65536,
    }
    for name, ok in checks.items():
        if not ok:
            raise UserError(f"{name}: invalid value {getattr(cfg, name)!r}")
    if cfg.delay is not None and cfg.delay > cfg.period:
        raise UserError(f"delay: {cfg.delay} is more than the period ({cfg.period})")


def _check_your_own(cfg: TrainConfig) -> None:
    """Bring your own: the loss, the optimizer's settings, data loading."""
    if cfg.loss != "cross_entropy" and not is_spec(cfg.loss):
        raise UserError(f"loss: {cfg.loss!r} is neither cross_entropy nor MODULE:CALLABLE")
    if not cfg.eps > 0 or cfg.loader_workers < 0:
        bad = "eps" if not cfg.eps > 0 else "loader_workers"
        raise UserError(f"{bad}: invalid value {getattr(cfg, bad)!r}")
    betas = [t.strip() for t in cfg.betas.split(",")]
    try:
        ok = len(betas) == 2 and all(0 <= float(b) < 1 for b in betas)
    except ValueError:
        ok = False
    if not ok:
        raise UserError(f"betas: {cfg.betas!r} is not two comma-separated numbers in [0, 1)")


def _check_swarm_options(cfg: TrainConfig) -> None:
    """The pull's, the new rules', outer step's, diversity's and selection's settings."""
    if not 0.0 <= cfg.pressure <= 1.0:
        raise UserError(f"pressure: must be in [0, 1], got {cfg.pressure}")
    if not cfg.temperature > 0:
        raise UserError(f"temperature: must be > 0, got {cfg.temperature}")
    if cfg.outer_lr is not None and not cfg.outer_lr > 0:
        raise UserError(f"outer_lr: must be > 0, got {cfg.outer_lr}")
    if cfg.outer_momentum is not None and not 0 <= cfg.outer_momentum < 1:
        raise UserError(f"outer_momentum: must be in [0, 1), got {cfg.outer_momentum}")
    outer = (cfg.outer_lr or 0) > 0 or (cfg.outer_momentum or 0) > 0
    if outer and cfg.strategy == "nosync" and cfg.rule not in catalog.outer_rules():
        raise UserError(
            f"outer_momentum: the outer step works with the rules "
            f"{', '.join(catalog.outer_rules())}, not {cfg.rule!r}"
        )
    if cfg.select != "best" and cfg.strategy != "nosync":
        raise UserError(f"select: {cfg.select} is for --strategy nosync, not {cfg.strategy}")
    if cfg.select == "soup" and cfg.fitness == "train-loss":
        raise UserError("select: soup needs --fitness held-out (it scores averaged models)")
    if cfg.diversity and cfg.loss != "cross_entropy":
        raise UserError("diversity: label smoothing needs --loss cross_entropy")
