"""Experiment configuration: one flat dataclass, validated before anything runs.

Every field can be set from a JSON/TOML file (``jwins run --config FILE``), from a
command-line flag of the same name (``--local-steps 3`` sets ``local_steps``) and as
an axis of a sweep. Each field's help text, type and allowed range is written once, as
an :class:`~jwins_jax.options.Option` in the field's metadata; the options of the
sharing strategies belong to the strategies (:mod:`jwins_jax.sharing`) and the
matching fields here only refer to them.

Fields that default to ``None`` take a value that depends on other fields (the model
follows the dataset; a strategy's parameters follow the strategy, e.g. metadata_cap
is 0.5 for JWINS and 1.0 otherwise); :meth:`Config.resolved` fills them in.

Fields are *static* (they shape the compiled program: model, nodes, rounds, ...) or
*traced* (hyperparameters that change no shape: lr, seed, alpha, ...);
:meth:`Config.static_key` groups the configs of a sweep that can share one program.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Any

from jwins_jax import options as opt
from jwins_jax import platform
from jwins_jax.data.datasets import DATASETS
from jwins_jax.data.partition import PARTITIONS
from jwins_jax.errors import ConfigError
from jwins_jax.models import DEFAULT_MODEL, MODELS
from jwins_jax.options import Option
from jwins_jax.sharing import OPTIONS as SHARING_OPTIONS
from jwins_jax.sharing import REGISTRY, STRATEGIES
from jwins_jax.topology import GRAPHS, check_dynamic

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MAX_ROUNDS = 10_000_000
# Fields that say where and how results are written, not what is computed.
RUN_CONTROL = ("name", "out_dir", "checkpoint_every", "shard_nodes")
MAX_SEED = 2**32 - 1


def _field(default: Any, option: Option) -> Any:
    return dataclasses.field(default=default, metadata={"option": option})


def _sharing_field(name: str) -> Any:
    return dataclasses.field(default=None, metadata={"option": SHARING_OPTIONS[name]})


@dataclasses.dataclass(frozen=True)
class Config:
    """A complete experiment; ``jwins run --help`` lists every field with its help."""

    # network
    nodes: int = _field(96, Option("number of nodes n", int, opt.int_range(2, 100_000)))
    topology: str = _field("edges", Option("communication graph", str, choices=GRAPHS))
    edges_file: str | None = _field(
        None,
        Option(
            "edges file for topology=edges (default: the paper's 96-node graph)",
            str,
            opt.path_text,
        ),
    )
    degree: int = _field(
        4,
        Option(
            "degree of regular and dynamic graphs; small_world links degree/2 per side",
            int,
            opt.int_range(1, 10_000),
        ),
    )
    dynamic: bool = _field(
        False,
        Option("draw a fresh random d-regular graph every round (SPEC 6.4)", bool),
    )
    beta: float = _field(
        0.1,
        Option("rewiring probability of small_world", float, opt.interval(0.0, 1.0)),
    )
    # faults (jwins_jax.faults)
    link_failure: float = _field(
        0.0,
        Option(
            "probability that a link is down in a round (no message either "
            "way), in [0, 1]",
            float,
            opt.interval(0.0, 1.0),
            traced=True,
        ),
    )
    churn: float = _field(
        0.0,
        Option(
            "probability that a node is offline in a round (no training, "
            "sending or receiving), in [0, 1]",
            float,
            opt.interval(0.0, 1.0),
            traced=True,
        ),
    )
    churn_schedule: str | None = _field(
        None,
        Option(
            "file of offline nodes per round: lines 'ROUND: NODE ...' or "
            "'FIRST-LAST: NODE ...'",
            str,
            opt.path_text,
        ),
    )
    # data and model
    dataset: str = _field(
        "digits", Option("training and test data", str, choices=DATASETS)
    )
    model: str | None = _field(
        None, Option("model (default: the dataset's model)", str, choices=MODELS)
    )
    partition: str = _field(
        "dirichlet",
        Option(
            "how the training data is split over nodes (SPEC 7.1; natural: by user)",
            str,
            choices=PARTITIONS,
        ),
    )
    dirichlet_alpha: float = _field(
        1.0,
        Option(
            "Dirichlet concentration of partition=dirichlet, > 0", float, opt.positive
        ),
    )
    shards: int = _field(
        2, Option("shards per node of partition=kshard", int, opt.int_range(1, 100_000))
    )
    data_dir: str | None = _field(
        None,
        Option(
            "directory of prepared datasets (cifar10: the tfds data_dir)",
            str,
            opt.path_text,
        ),
    )
    # local training
    rounds: int = _field(
        150, Option("communication rounds T", int, opt.int_range(1, MAX_ROUNDS))
    )
    local_steps: int = _field(
        3, Option("local SGD steps per round (tau)", int, opt.int_range(1, 10_000))
    )
    batch_size: int = _field(
        8, Option("minibatch size b", int, opt.int_range(1, 1_000_000))
    )
    lr: float = _field(
        0.05, Option("learning rate, > 0", float, opt.positive, traced=True)
    )
    momentum: float = _field(
        0.0,
        Option(
            "SGD momentum (paper: 0), in [0, 1)",
            float,
            opt.interval(0.0, 1.0, right_open=True),
            traced=True,
        ),
    )
    weight_decay: float = _field(
        0.0,
        Option(
            "weight decay (paper: 0), >= 0",
            float,
            opt.interval(0.0, float("inf")),
            traced=True,
        ),
    )
    seed: int = _field(
        90,
        Option(
            "seed of the run: model init, batches, masks, partition, graph",
            int,
            opt.int_range(0, MAX_SEED),
            traced=True,
        ),
    )
    train_chunk: int | None = _field(
        None,
        Option(
            "train nodes in groups of this many (0: all at once; unset: per "
            "backend, "
            + ", ".join(
                f"{b} {v['train_chunk'] or 'all'}" for b, v in platform.DEFAULTS.items()
            )
            + "); bounds memory",
            int,
            opt.int_range(0, 100_000),
        ),
    )
    # evaluation
    eval_every: int = _field(
        10, Option("rounds between evaluations", int, opt.int_range(1, MAX_ROUNDS))
    )
    test_subset: int = _field(
        0,
        Option(
            "evaluate on the first K test samples (0: all)",
            int,
            opt.int_range(0, 10**9),
        ),
    )
    eval_nodes: int = _field(
        0,
        Option(
            "evaluate a random sample of K nodes at each evaluation, a new sample "
            "each time, drawn from the run's seed (0, or K >= nodes: every node)",
            int,
            opt.int_range(0, 100_000),
        ),
    )
    # sharing (the options belong to the strategies, see jwins_jax.sharing)
    sharing: str = _field("full", Option("sharing strategy", str, choices=STRATEGIES))
    alpha: float | None = _sharing_field("alpha")
    alpha_list: tuple[float, ...] | None = _sharing_field("alpha_list")
    metadata_cap: float | None = _sharing_field("metadata_cap")
    gamma: float | None = _sharing_field("gamma")
    wavelet: str | None = _sharing_field("wavelet")
    level: int | None = _sharing_field("level")
    accumulation: str | None = _sharing_field("accumulation")
    selection: str | None = _sharing_field("selection")
    wavelet_backend: str | None = _sharing_field("wavelet_backend")
    topk_method: str | None = _sharing_field("topk_method")
    # output
    out_dir: str = _field("runs", Option("directory for results", str, opt.path_text))
    shard_nodes: bool = _field(
        True,
        Option(
            "split the node axis over the local devices when there are several", bool
        ),
    )
    checkpoint_every: int = _field(
        0,
        Option(
            "save a checkpoint every K rounds (0: only when stopped by Ctrl-C or "
            "SIGTERM); jwins run --resume RUN_DIR continues",
            int,
            opt.int_range(0, MAX_ROUNDS),
        ),
    )
    name: str | None = _field(
        None,
        Option(
            "run name (default: <sharing>-<dataset>-n<nodes>-s<seed>)",
            str,
            opt.file_name,
        ),
    )

    # ------------------------------------------------------------------ helpers
    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def option(cls, name: str) -> Option:
        """The option of a field."""
        return cls.fields()[name].metadata["option"]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        """Builds a config from a mapping, rejecting unknown keys and wrong types."""
        known = cls.fields()
        kwargs = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise ConfigError(
                    f"{source}: unknown field {str(key)!r}; allowed: "
                    + ", ".join(sorted(known))
                )
            if name == "alpha_list" and isinstance(value, str):
                value = opt.parse_float_list(value)
            kwargs[name] = (
                None if value is None else cls.option(name).validate(name, value)
            )
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> Config:
        """Reads a ``.json`` or ``.toml`` config file."""
        return cls.from_dict(read_table(path), source=str(path))

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.alpha_list is not None:
            d["alpha_list"] = list(self.alpha_list)
        return d

    def sharing_params(self) -> dict[str, Any]:
        """The chosen strategy's parameters (resolved config)."""
        return {p: getattr(self, p) for p in REGISTRY[self.sharing].params}

    def resolved(self) -> Config:
        """Fills in the fields whose default depends on other fields."""
        changes: dict[str, Any] = {}
        if self.model is None:
            changes["model"] = DEFAULT_MODEL.get(self.dataset, "digits_cnn")
        if self.sharing in REGISTRY:
            for p, default in REGISTRY[self.sharing].defaults.items():
                if getattr(self, p) is None:
                    changes[p] = default
        if self.name is None:
            changes["name"] = (
                f"{self.sharing}-{self.dataset}-n{self.nodes}-s{self.seed}"
            )
        return dataclasses.replace(self, **changes)

    # --------------------------------------------------------------- validation
    def validate(self) -> Config:
        """Checks every field; returns the resolved config or raises ConfigError.

        The returned config is marked as validated (:attr:`validated`), so the
        functions it is handed to trust it instead of checking it again; any
        ``replace`` gives an unmarked copy.
        """
        if self.validated:
            return self
        values = {}
        for name, field in self.fields().items():
            value = getattr(self, name)
            if value is not None:
                if name == "alpha_list" and isinstance(value, str):
                    value = opt.parse_float_list(value)
                value = field.metadata["option"].validate(name, value)
            values[name] = value
        c = Config(**values).resolved()
        if c.edges_file is not None and c.topology != "edges":
            raise ConfigError(
                f"edges_file={c.edges_file!r} is only used with topology='edges', "
                f"not topology={c.topology!r}"
            )
        if c.dynamic and c.topology not in ("regular", "edges"):
            raise ConfigError(
                f"dynamic=True draws a fresh random d-regular graph each round; "
                f"it is not allowed with topology={c.topology!r} (use 'regular')"
            )
        if c.dynamic:
            check_dynamic(c.nodes, c.degree)
        if c.eval_every > c.rounds:
            c = c.replace(eval_every=c.rounds)
        object.__setattr__(c, "_validated", True)
        return c

    @property
    def validated(self) -> bool:
        """Whether this object came out of :meth:`validate` (and was not replaced)."""
        return self.__dict__.get("_validated", False)

    @property
    def faults_enabled(self) -> bool:
        """Whether rounds draw faults: link_failure > 0, churn > 0 or a schedule."""
        scheduled = self.churn_schedule is not None
        return self.link_failure > 0 or self.churn > 0 or scheduled

    # ------------------------------------------------------------ static / traced
    @staticmethod
    def traced_fields(sharing: str) -> tuple[str, ...]:
        """The traced hyperparameters of a config with this strategy."""
        general = tuple(
            n
            for n, f in Config.fields().items()
            if n not in SHARING_OPTIONS and f.metadata["option"].traced
        )
        return general + REGISTRY[sharing].traced

    def static_key(self) -> tuple:
        """What two resolved configs must share to run in one compiled program.

        Everything but the traced hyperparameters and the output names, with the
        strategy's unused options left out, plus the facts the traced values carry
        into the program: the length of the alpha list, whether momentum is used and
        whether faults are drawn at all.
        """
        traced = set(self.traced_fields(self.sharing))
        used = set(REGISTRY[self.sharing].params)
        key = []
        for name in self.fields():
            if name in traced or name in RUN_CONTROL:
                continue
            if name in SHARING_OPTIONS and name not in used:
                continue
            key.append((name, getattr(self, name)))
        if "alpha_list" in used:
            key.append(("alpha_list_length", len(self.alpha_list)))
        key.append(("uses_momentum", self.momentum > 0))
        key.append(("faults", self.faults_enabled))
        return tuple(key)


def read_table(path: str | pathlib.Path) -> dict[str, Any]:
    """A ``.json`` or ``.toml`` file's top-level table (ConfigError if unreadable)."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if p.suffix not in (".toml", ".json"):
        raise ConfigError(
            f"config file {str(p)!r}: unknown format; allowed suffixes: .json, .toml"
        )
    text = opt.read_text_file(p, f"config file {str(p)!r}")
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        msg = str(err).splitlines()[0]
        raise ConfigError(f"config file {str(p)!r} is not valid: {msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a table/object of fields")
    return data
