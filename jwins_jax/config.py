"""Experiment configuration: one flat dataclass, validated before anything runs.

Every field can be set from a JSON/TOML file (``jwins run --config FILE``) and from a
command-line flag of the same name (``--local-steps 3`` sets ``local_steps``). Fields
that default to ``None`` take a value that depends on other fields (for example the
model follows the dataset, and ``metadata_cap`` is 0.5 for JWINS and 1.0 otherwise);
:meth:`Config.resolved` fills them in.

Validation raises :class:`~jwins_jax.errors.ConfigError` with one line naming the
field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import tomllib
from typing import Any

from jwins_jax.errors import ConfigError

# JWINS's alpha list of the shipped configs (SPEC 4.5).
PAPER_ALPHA_LIST = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)
DEFAULT_MODEL = {
    "digits": "digits_cnn",
    "synthetic_cifar": "gn_lenet",
    "cifar10": "gn_lenet",
}
ACCUMULATION_MODES = ("none", "accumulate", "legacy")
SELECTIONS = ("change", "magnitude")


@dataclasses.dataclass(frozen=True)
class Config:
    """A complete experiment. See the README's option table for every field."""

    # network
    nodes: int = 96
    topology: str = "edges"
    edges_file: str | None = None  # None: the paper's 96-node graph
    degree: int = 4
    dynamic: bool = False
    beta: float = 0.1
    # data and model
    dataset: str = "digits"
    model: str | None = None  # None: the dataset's default model
    partition: str = "dirichlet"
    dirichlet_alpha: float = 1.0
    shards: int = 2
    data_dir: str | None = None
    # local training
    rounds: int = 150
    local_steps: int = 3
    batch_size: int = 8
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 90
    train_chunk: int = 8  # train nodes in groups of <= 8 (0: all at once)
    # evaluation
    eval_every: int = 10
    test_subset: int = 0  # 0: the whole test split
    # sharing
    sharing: str = "full"
    alpha: float = 0.1
    alpha_list: tuple[float, ...] = PAPER_ALPHA_LIST
    metadata_cap: float | None = None  # None: 0.5 for jwins, 1.0 otherwise
    wavelet: str = "sym2"
    level: int = 4
    accumulation: str | None = None  # None: "legacy" for jwins, "none" otherwise
    selection: str = "change"
    gamma: float = 0.5
    wavelet_backend: str = "auto"
    topk_method: str = "auto"
    # output
    out_dir: str = "runs"
    name: str | None = None  # None: "<sharing>-<dataset>-n<nodes>-s<seed>"

    # ------------------------------------------------------------------ helpers
    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        """Builds a config from a mapping, rejecting unknown keys and coercing types."""
        known = cls.fields()
        kwargs = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(
                    f"{source}: unknown field {key!r}; allowed: {', '.join(sorted(known))}"
                )
            kwargs[name] = _coerce(name, value, known[name])
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> Config:
        """Reads a ``.json`` or ``.toml`` config file."""
        p = pathlib.Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        text = p.read_text()
        try:
            if p.suffix == ".toml":
                data = tomllib.loads(text)
            elif p.suffix == ".json":
                data = json.loads(text)
            else:
                raise ConfigError(
                    f"config file {str(p)!r}: unknown format; allowed suffixes: .json, .toml"
                )
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
            msg = str(err).splitlines()[0]
            raise ConfigError(f"config file {str(p)!r} is not valid: {msg}") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"config file {str(p)!r} must hold a table/object of fields"
            )
        return cls.from_dict(data, source=str(p))

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["alpha_list"] = list(self.alpha_list)
        return d

    def resolved(self) -> Config:
        """Fills in the fields whose default depends on other fields."""
        changes: dict[str, Any] = {}
        if self.model is None:
            changes["model"] = DEFAULT_MODEL.get(self.dataset, "digits_cnn")
        if self.metadata_cap is None:
            changes["metadata_cap"] = 0.5 if self.sharing == "jwins" else 1.0
        if self.accumulation is None:
            changes["accumulation"] = "legacy" if self.sharing == "jwins" else "none"
        if self.name is None:
            changes["name"] = (
                f"{self.sharing}-{self.dataset}-n{self.nodes}-s{self.seed}"
            )
        return dataclasses.replace(self, **changes)

    # --------------------------------------------------------------- validation
    def validate(self) -> Config:
        """Checks every field; returns the resolved config or raises ConfigError."""
        from jwins_jax.data.datasets import DATASETS
        from jwins_jax.data.partition import PARTITIONS
        from jwins_jax.models import MODELS
        from jwins_jax.sharing import STRATEGIES
        from jwins_jax.sparsify import METHODS
        from jwins_jax.topology import GRAPHS
        from jwins_jax.wavelets import BACKENDS

        c = self.resolved()
        _choice("topology", c.topology, GRAPHS)
        _choice("dataset", c.dataset, DATASETS)
        _choice("model", c.model, MODELS)
        _choice("partition", c.partition, PARTITIONS)
        _choice("sharing", c.sharing, STRATEGIES)
        _choice("accumulation", c.accumulation, ACCUMULATION_MODES)
        _choice("selection", c.selection, SELECTIONS)
        _choice("wavelet_backend", c.wavelet_backend, BACKENDS)
        _choice("topk_method", c.topk_method, METHODS)
        _int_at_least("nodes", c.nodes, 2)
        _int_at_least("degree", c.degree, 1)
        _int_at_least("rounds", c.rounds, 1)
        _int_at_least("local_steps", c.local_steps, 1)
        _int_at_least("batch_size", c.batch_size, 1)
        _int_at_least("eval_every", c.eval_every, 1)
        _int_at_least("shards", c.shards, 1)
        _int_at_least("test_subset", c.test_subset, 0)
        _int_at_least("train_chunk", c.train_chunk, 0)
        _int_at_least("level", c.level, 1)
        _int_at_least("seed", c.seed, 0)
        _positive("lr", c.lr)
        _positive("dirichlet_alpha", c.dirichlet_alpha)
        _positive("gamma", c.gamma)
        _in_range("momentum", c.momentum, 0.0, 1.0, right_open=True)
        _in_range("weight_decay", c.weight_decay, 0.0, math.inf)
        _in_range("beta", c.beta, 0.0, 1.0)
        _unit_interval("alpha", c.alpha)
        _unit_interval("metadata_cap", c.metadata_cap)
        if not c.alpha_list:
            raise ConfigError("alpha_list is empty: give at least one value in (0, 1]")
        for a in c.alpha_list:
            _unit_interval("alpha_list entry", a)
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
        return c


# ---------------------------------------------------------------------- checks
def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{field}={value!r} is unknown; allowed: {', '.join(allowed)}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(field: str, value: Any, low: int) -> None:
    if not _is_int(value) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{field}={value!r} is not allowed: {field} must be {kind}")


def _number(field: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
    ):
        raise ConfigError(f"{field}={value!r} is not a number")
    return float(value)


def _positive(field: str, value: Any) -> None:
    v = _number(field, value)
    if not v > 0 or math.isinf(v):
        raise ConfigError(f"{field}={value!r} is not allowed: {field} must be > 0")


def _in_range(
    field: str, value: Any, low: float, high: float, right_open: bool = False
) -> None:
    v = _number(field, value)
    ok = low <= v < high if right_open else low <= v <= high
    if not ok:
        right = ")" if right_open else "]"
        raise ConfigError(
            f"{field}={value!r} is not allowed: {field} must be in [{low}, {high}{right}"
        )


def _unit_interval(field: str, value: Any) -> None:
    v = _number(field, value)
    if not 0.0 < v <= 1.0:
        raise ConfigError(
            f"{field}={value!r} is not allowed: {field} must be in (0, 1]"
        )


def _coerce(name: str, value: Any, field: dataclasses.Field) -> Any:
    """Light type coercion for values read from files (lists become tuples)."""
    if name == "alpha_list":
        if isinstance(value, str):
            value = [
                v
                for v in value.replace("[", "").replace("]", "").split(",")
                if v.strip()
            ]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"alpha_list={value!r} must be a list of numbers in (0, 1]"
            )
        try:
            return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"alpha_list={value!r} must be a list of numbers in (0, 1]"
            ) from None
    return value
