"""Experiment configuration: one flat dataclass, validated before anything runs.

Every field can be set from a JSON/TOML file (``jwins run --config FILE``), from a
command-line flag of the same name (``--local-steps 3`` sets ``local_steps``) and as
an axis of a sweep. Each field's help text, type and allowed range is written once, as
an :class:`~jwins_jax.options.Option` in the field's metadata; the options of the
sharing strategies belong to the strategies (:mod:`jwins_jax.sharing`) and the
matching fields here only refer to them.

Fields that default to ``None`` take a value that depends on other fields;
:meth:`Config.resolved` fills them in. The dataset brings the paper's run settings
(``model``, ``partition``, ``rounds``, ``local_steps``, ``batch_size``, ``lr``,
``eval_every``: :mod:`jwins_jax.data.registry`), a strategy its parameters (e.g.
metadata_cap is 0.5 for JWINS and 1.0 otherwise), and ``downlink_mbps`` follows
``bandwidth_mbps``. A value the user sets (in a config file, as a flag or a sweep
axis) always wins; such a field given as ``null`` in a file, like a field left out,
means "the default"; any other field given as ``null`` is refused
(:meth:`Config.check_null`). :meth:`Config.dataset_defaults_used` says which values
came from the dataset.

Fields are *static* (they shape the compiled program: model, nodes, rounds, ...) or
*traced* (hyperparameters that change no shape: lr, seed, alpha, ...);
:meth:`Config.static_key` groups the configs of a sweep that can share one program.

A registered strategy's own options (:func:`jwins_jax.sharing.register`) live in
``sharing_options``; a config file, a sweep spec and the command line set them by
name like any field (``tau = 0.1``, ``--tau 0.1``), :meth:`Config.value` reads either,
and they take part in :meth:`Config.static_key` and :meth:`Config.traced_fields`
exactly as the built-in strategies' options do.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Any

from jwins_jax import hostcodec, platform
from jwins_jax import options as opt
from jwins_jax import sharing as sharing_registry
from jwins_jax.data.partition import PARTITIONS
from jwins_jax.data.registry import (
    DATASET_FIELDS,
    DATASET_NAMES,
    check_partition,
    dataset_info,
)
from jwins_jax.errors import ConfigError
from jwins_jax.models import MODELS
from jwins_jax.options import Option
from jwins_jax.sharing import OPTIONS as SHARING_OPTIONS
from jwins_jax.topology import GRAPHS, check_dynamic

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MAX_ROUNDS = 10_000_000
# Fields whose default is another field's value: resolved() fills them in, and a
# replace() of the source on a resolved config lets them follow it again.
DERIVED = {"downlink_mbps": ("bandwidth_mbps",)}
# Fields that say where and how results are written, not what is computed.
RUN_CONTROL = ("name", "out_dir", "checkpoint_every", "shard_nodes")
MAX_SEED = 2**32 - 1


def _field(default: Any, option: Option) -> Any:
    return dataclasses.field(default=default, metadata={"option": option})


def _sharing_field(name: str) -> Any:
    return dataclasses.field(default=None, metadata={"option": SHARING_OPTIONS[name]})


def _known_strategy(name: str, value: str) -> None:
    sharing_registry.get(value)  # ConfigError naming the allowed strategies


def _sharing_options(name: str, value: tuple) -> tuple[tuple[str, Any], ...]:
    """Options of registered strategies, each checked by its Option; sorted pairs."""
    out = {}
    for key, v in value:
        if key in _FIELD_NAMES:
            raise ConfigError(
                f"{name}: {key!r} is a config field; set {key} = ... directly"
            )
        option = sharing_registry.user_options().get(key)
        if option is None:
            known = ", ".join(sorted(sharing_registry.user_options())) or "none"
            raise ConfigError(
                f"{name}: {key!r} is not an option of a registered strategy; "
                f"registered options: {known}"
            )
        out[key] = v if v is None else option.validate(key, _from_text(option, v))
    return tuple(sorted(out.items()))


def _from_text(option: Option, value: Any) -> Any:
    """A list option given as text (``"0.1,0.2"``) as a tuple of floats."""
    if option.kind is tuple and isinstance(value, str):
        return opt.parse_float_list(value)
    return value


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
    # simulated time (jwins_jax.simtime)
    node_gflops: float = _field(
        10.0,
        Option(
            "simulated compute speed of a node, GFLOP/s (> 0)",
            float,
            opt.positive,
            traced=True,
        ),
    )
    bandwidth_mbps: float = _field(
        100.0,
        Option(
            "simulated uplink bandwidth of a node, Mbit/s (> 0)",
            float,
            opt.positive,
            traced=True,
        ),
    )
    downlink_mbps: float | None = _field(
        None,
        Option(
            "simulated downlink bandwidth of a node, Mbit/s (> 0; default: "
            "bandwidth_mbps)",
            float,
            opt.positive,
            traced=True,
        ),
    )
    latency_ms: float = _field(
        1.0,
        Option(
            "simulated one-way latency of every link, ms (>= 0)",
            float,
            opt.interval(0.0, float("inf")),
            traced=True,
        ),
    )
    node_spread: float = _field(
        0.0,
        Option(
            "heterogeneity: sigma of the log-normal factors (mean 1) that multiply "
            "each node's compute speed and bandwidths, in [0, 3]",
            float,
            opt.interval(0.0, 3.0),
            traced=True,
        ),
    )
    spread_seed: int = _field(
        0,
        Option(
            "seed of the node_spread factors (drawn once per node)",
            int,
            opt.int_range(0, MAX_SEED),
            traced=True,
        ),
    )
    node_profile: str | None = _field(
        None,
        Option(
            "CSV of per-node speeds 'node,compute,up,down' (GFLOP/s, Mbit/s, Mbit/s); "
            "listed nodes replace the uniform values",
            str,
            opt.path_text,
        ),
    )
    straggler_trace: str | None = _field(
        None,
        Option(
            "CSV 'round,node,factor': multiplies that node's compute time in that "
            "round (stragglers that come and go)",
            str,
            opt.path_text,
        ),
    )
    # data and model
    dataset: str = _field(
        "digits",
        Option(
            "training and test data; it brings the paper's settings of the fields "
            "marked 'per dataset'",
            str,
            choices=DATASET_NAMES,
        ),
    )
    model: str | None = _field(None, Option("model", str, choices=MODELS))
    partition: str | None = _field(
        None,
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
    rounds: int | None = _field(
        None, Option("communication rounds T", int, opt.int_range(1, MAX_ROUNDS))
    )
    local_steps: int | None = _field(
        None, Option("local SGD steps per round (tau)", int, opt.int_range(1, 10_000))
    )
    batch_size: int | None = _field(
        None, Option("minibatch size b", int, opt.int_range(1, 1_000_000))
    )
    lr: float | None = _field(
        None, Option("learning rate, > 0", float, opt.positive, traced=True)
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
    eval_every: int | None = _field(
        None, Option("rounds between evaluations", int, opt.int_range(1, MAX_ROUNDS))
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
    sharing: str = _field(
        "full",
        Option(
            "sharing strategy: a built-in one or one registered in code or by an "
            "installed package",
            str,
            _known_strategy,
        ),
    )
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
    float_precision: int | None = _sharing_field("float_precision")
    sharing_options: tuple[tuple[str, Any], ...] = _field(
        (),
        Option(
            "options of registered strategies, NAME = value (set by name like any "
            "field: --NAME, NAME = ... in files and sweeps)",
            dict,
            _sharing_options,
        ),
    )
    # a real float codec, measured on the host (jwins_jax.hostcodec)
    fpzip_every: int = _field(
        0,
        Option(
            "every K-th round (0, K, 2K, ...) compress each node's sent values with "
            "lossless fpzip on the host and report the bytes next to the counted "
            "ones (fpzip_* in metrics.jsonl; the simulated clock keeps the counted "
            "bytes; needs the fpzip extra); 0: off",
            int,
            opt.int_range(0, MAX_ROUNDS),
        ),
    )
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
        """The option of a field or of a registered strategy's option.

        Raises:
            KeyError: neither.
        """
        if name in _FIELD_NAMES:
            return cls.fields()[name].metadata["option"]
        option = sharing_registry.user_options().get(name)
        if option is None:
            raise KeyError(name)
        return option

    @classmethod
    def is_setting(cls, name: str) -> bool:
        """Whether ``name`` is a field or an option of a registered strategy."""
        return name in _FIELD_NAMES or name in sharing_registry.user_options()

    @classmethod
    def optional(cls, name: str) -> bool:
        """Whether a setting may be unset (None): its default follows other fields
        (a registered strategy's option: the strategy's default)."""
        return name not in _FIELD_NAMES or cls.fields()[name].default is None

    @classmethod
    def check_null(cls, name: str, source: str | None = None) -> None:
        """Refuses a field given as null (None) unless it is optional.

        Raises:
            ConfigError: naming the field (and ``source``, the file or spec) and
                saying what is allowed instead.
        """
        if cls.optional(name):
            return
        where = f"{source}: " if source else ""
        default = cls.fields()[name].default
        shown = "true" if default is True else "false" if default is False else default
        raise ConfigError(
            f"{where}{name}=null is not allowed: {name} must not be null; give "
            f"{cls.option(name).allowed()}, or leave it out for the default ({shown})"
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        """Builds a config from a mapping, rejecting unknown keys and wrong types.

        Keys are fields, or options of registered strategies (which go to
        ``sharing_options``). A null (None) value means the setting's default where
        it is optional (:meth:`optional`) and is refused otherwise.
        """
        known = cls.fields()
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if not cls.is_setting(name):
                allowed = sorted(known) + sorted(sharing_registry.user_options())
                raise ConfigError(
                    f"{source}: unknown field {str(key)!r}; allowed: "
                    + ", ".join(allowed)
                )
            if value is None:
                cls.check_null(name, source)
                continue
            option = cls.option(name)
            value = option.validate(name, _from_text(option, value))
            if name in known:
                kwargs[name] = value
            else:
                extra[name] = value
        if extra:
            given = dict(kwargs.get("sharing_options") or ())
            kwargs["sharing_options"] = tuple(sorted({**given, **extra}.items()))
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> Config:
        """Reads a ``.json`` or ``.toml`` config file."""
        return cls.from_dict(read_table(path), source=str(path))

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes``; never marked as validated.

        Fields filled in from the dataset stay marked as such unless changed; a
        change of ``dataset`` sets them back to None, so the new dataset's values
        fill them (a resolved config handed another dataset does not keep the old
        one's learning rate).
        """
        kept = [f for f in self._from_dataset if f not in changes]
        if kept and changes.get("dataset", self.dataset) != self.dataset:
            changes = {**{f: None for f in kept}, **changes}
            kept = []
        derived = []
        for field in self.__dict__.get("_derived", ()):
            if field in changes:
                continue
            if any(source in changes for source in DERIVED[field]):
                changes = {**changes, field: None}  # follows its source again
            else:
                derived.append(field)
        out = dataclasses.replace(self, **changes)._mark_from_dataset(kept)
        object.__setattr__(out, "_derived", tuple(derived))
        return out

    @property
    def _from_dataset(self) -> tuple[str, ...]:
        """The fields :meth:`resolved` filled in from the dataset."""
        return self.__dict__.get("_dataset_fields", ())

    def _mark_from_dataset(self, fields: Any) -> Config:
        marked = tuple(f for f in DATASET_FIELDS if f in set(fields))
        object.__setattr__(self, "_dataset_fields", marked)
        return self

    def dataset_defaults_used(self) -> dict[str, Any]:
        """The fields whose value is the dataset's, with that value.

        These are the fields of ``jwins_jax.data.DATASET_FIELDS`` left unset (None)
        here or filled in from the dataset by :meth:`resolved` (and
        :meth:`validate`); a field the user set is not among them, even when its
        value equals the dataset's, and neither is an ``eval_every`` that
        :meth:`validate` capped at ``rounds``. In ``DATASET_FIELDS`` order.
        """
        defaults = dataset_info(self.dataset).defaults
        out = {}
        for name in DATASET_FIELDS:
            value = getattr(self, name)
            if value is None:
                out[name] = getattr(defaults, name)
            elif name in self._from_dataset:
                out[name] = value
        return out

    def updated(self, values: dict[str, Any]) -> Config:
        """A copy with fields and registered strategies' options set by name."""
        fields = {k: v for k, v in values.items() if k in _FIELD_NAMES}
        extra = {k: v for k, v in values.items() if k not in _FIELD_NAMES}
        if extra:
            given = dict(fields.get("sharing_options", self.sharing_options) or ())
            fields["sharing_options"] = tuple(sorted({**given, **extra}.items()))
        return self.replace(**fields)

    def value(self, name: str) -> Any:
        """A field's value, or a registered strategy's option from
        ``sharing_options`` (None if not set)."""
        if name in _FIELD_NAMES:
            return getattr(self, name)
        return dict(self.sharing_options or ()).get(name)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.alpha_list is not None:
            d["alpha_list"] = list(self.alpha_list)
        d["sharing_options"] = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in (self.sharing_options or ())
        }
        return d

    def sharing_params(self) -> dict[str, Any]:
        """The chosen strategy's parameters (resolved config)."""
        return {p: self.value(p) for p in sharing_registry.get(self.sharing).params}

    def resolved(self) -> Config:
        """Fills in the fields whose default depends on other fields.

        Raises:
            ConfigError: an unknown dataset.
        """
        changes: dict[str, Any] = {}
        defaults = dataset_info(self.dataset).defaults
        filled = list(self._from_dataset)
        for name in DATASET_FIELDS:
            if getattr(self, name) is None:
                changes[name] = getattr(defaults, name)
                filled.append(name)
        try:
            strategy = sharing_registry.get(self.sharing)
        except ConfigError:
            strategy = None
        if strategy is not None:
            extra = dict(self.sharing_options or ())
            for p, default in strategy.defaults.items():
                if p in _FIELD_NAMES:
                    if getattr(self, p) is None:
                        changes[p] = default
                elif extra.get(p) is None:
                    extra[p] = default
            changes["sharing_options"] = tuple(sorted(extra.items()))
        derived = list(self.__dict__.get("_derived", ()))
        if self.downlink_mbps is None:
            changes["downlink_mbps"] = self.bandwidth_mbps
            derived.append("downlink_mbps")
        if self.name is None:
            changes["name"] = (
                f"{self.sharing}-{self.dataset}-n{self.nodes}-s{self.seed}"
            )
        out = dataclasses.replace(self, **changes)._mark_from_dataset(filled)
        object.__setattr__(out, "_derived", tuple(derived))
        return out

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
            if value is None:
                self.check_null(name)
            else:
                option = field.metadata["option"]
                value = option.validate(name, _from_text(option, value))
            values[name] = value
        c = Config(**values)._mark_from_dataset(self._from_dataset)
        object.__setattr__(c, "_derived", self.__dict__.get("_derived", ()))
        c = c.resolved()
        check_partition(c.dataset, c.partition)
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
        if c.fpzip_every:
            hostcodec.require_fpzip(c.fpzip_every)
            levels = c.sharing_params().get("float_precision") or 0
            if levels:
                raise ConfigError(
                    f"fpzip_every={c.fpzip_every} is not allowed with "
                    f"float_precision={levels}: fpzip measures the lossless "
                    "compression of raw float32 values; set one of them to 0"
                )
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
        return general + sharing_registry.get(sharing).traced

    def static_key(self) -> tuple:
        """What two resolved configs must share to run in one compiled program.

        Everything but the traced hyperparameters and the output names, with the
        strategy's unused options left out (built-in or registered), plus the facts
        the traced values carry into the program: the length of every traced list
        option (the alpha list), whether momentum is used and whether faults are
        drawn at all.
        """
        strategy = sharing_registry.get(self.sharing)
        traced = set(self.traced_fields(self.sharing))
        used = set(strategy.params)
        key = []
        for name in self.fields():
            if name in traced or name in RUN_CONTROL or name == "sharing_options":
                continue
            if name in SHARING_OPTIONS and name not in used:
                continue
            key.append((name, getattr(self, name)))
        for p in strategy.params:
            if p not in _FIELD_NAMES and p not in traced:
                key.append((p, self.value(p)))
        for p in strategy.params:
            if p in traced and strategy.options[p].kind is tuple:
                key.append((f"{p}_length", len(self.value(p))))
        key.append(("uses_momentum", self.momentum > 0))
        key.append(("faults", self.faults_enabled))
        return tuple(key)


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Config))


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
