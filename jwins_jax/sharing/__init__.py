"""Sharing strategies and their registry (SPEC 4; DESIGN.md "House style").

``make_sharing(name, n_params, **params)`` validates the parameters against the
strategy's options and builds a :class:`Sharing`; the experiments, the command line
and the tests all go through it.

=========  ===========================================  ==========
name       algorithm                                    SPEC
=========  ===========================================  ==========
full       full sharing, D-PSGD                         4.1
random     random sampling (Bernoulli mask, seed only)  4.3
topk       PartialModel: top-k of the change            4.2
wavelet    wavelet-domain top-k, fixed alpha            4.4
jwins      wavelet top-k, alpha drawn from a list       4.5
fft        top-k in the real-FFT domain (ablation)      4.6
choco      CHOCO-SGD with top-k compression             4.7
=========  ===========================================  ==========

Each strategy owns its parameters: a :class:`Strategy` holds its factory and the
options it takes (declared once, :class:`~jwins_jax.options.Option`: help, type,
check, traced or static); the factory's signature holds their defaults. The config,
the command line and the sweeps read both from here.

**Your own strategy.** Compose it from the public blocks
(:mod:`jwins_jax.sharing.blocks`) and register its factory, in code::

    from jwins_jax.sharing import register
    register("mine", factory, {"tau": Option("...", float, check, traced=True)})

or from an installed package, through the entry-point group ``jwins_jax.sharing``
(read once, the first time a strategy name or option is looked up that is not
built in)::

    [project.entry-points."jwins_jax.sharing"]
    mine = "my_package:STRATEGY"        # STRATEGY = Strategy("mine", factory, options)

Then ``jwins run --sharing mine --tau 0.1``, ``jwins compare --strategies
jwins,mine``, sweeps (``sharing = "mine"``, ``tau`` as an axis; traced options are
vmapped) and ``Config(sharing="mine", sharing_options={"tau": 0.1})`` accept it. A
strategy may reuse built-in options (pass the same :data:`OPTIONS` entry, e.g.
``OPTIONS["alpha"]``); any other name that collides with a config field, a built-in
option, another strategy's option or a command-line flag is refused at registration.
:func:`jwins_jax.testing.contract.check_strategy` checks a strategy's contract.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from jwins_jax.errors import ConfigError
from jwins_jax.options import Option
from jwins_jax.sharing import choco as _choco
from jwins_jax.sharing import full as _full
from jwins_jax.sharing import partial as _partial
from jwins_jax.sharing import subsampling as _subsampling
from jwins_jax.sharing.base import (
    OPTIONS,
    RoundInputs,
    Sharing,
    Stats,
    message_bytes,
)

ENTRY_POINT_GROUP = "jwins_jax.sharing"
"""The entry-point group through which installed packages register strategies."""

NAME_RULE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# Flags of the command line that are not config fields (jwins_jax.cli).
RESERVED_NAMES = frozenset(
    {
        "config", "resume", "quiet", "strategies", "dry_run", "batch", "spec", "help",
        "device_memory", "coordinator", "num_processes", "process_id", "distributed",
    }
)  # fmt: skip
_KINDS = (int, float, str, bool, tuple)


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A strategy: its name, factory and the options of its parameters.

    Attributes:
        name: the name ``--sharing`` takes.
        factory: ``factory(n_params, **params) -> Sharing``; its signature holds
            every parameter's default.
        options: parameter name -> :class:`Option`, in the factory's order.
        source: where it was registered (built-in, ``register()``, an entry point).
    """

    name: str
    factory: Callable[..., Sharing]
    options: Mapping[str, Option] = dataclasses.field(default_factory=dict)
    source: str = ""

    @property
    def params(self) -> tuple[str, ...]:
        """The parameter names it takes (besides ``n_params``)."""
        return tuple(self.options)

    @property
    def defaults(self) -> dict[str, Any]:
        """The defaults of its parameters (from the factory's signature)."""
        sig = inspect.signature(self.factory)
        return {p: sig.parameters[p].default for p in self.params}

    @property
    def traced(self) -> tuple[str, ...]:
        """Its parameters that are traced hyperparameters."""
        return tuple(p for p, o in self.options.items() if o.traced)


def _builtin(name: str, factory: Callable[..., Sharing], params) -> Strategy:
    return Strategy(name, factory, {p: OPTIONS[p] for p in params}, "built-in")


REGISTRY: dict[str, Strategy] = {
    s.name: s
    for s in (
        _builtin("full", _full.full, _full.PARAMS),
        _builtin("random", _subsampling.random_sampling, _subsampling.PARAMS),
        _builtin("topk", _partial.topk, _partial.TOPK_PARAMS),
        _builtin("wavelet", _partial.wavelet, _partial.WAVELET_PARAMS),
        _builtin("jwins", _partial.jwins, _partial.JWINS_PARAMS),
        _builtin("fft", _partial.fft, _partial.FFT_PARAMS),
        _builtin("choco", _choco.choco, _choco.PARAMS),
    )
}
STRATEGIES: tuple[str, ...] = tuple(REGISTRY)
"""The built-in strategies (:func:`strategies` lists the registered ones too)."""

ENTRY_POINT_ERRORS: dict[str, str] = {}
"""Entry points that failed to load: name -> why (see :func:`load_entry_points`)."""
_entry_points_read = False


# ---------------------------------------------------------------------- registration
def _refuse(name: str, why: str) -> None:
    raise ConfigError(f"cannot register sharing strategy {name!r}: {why}")


def _check_option(strategy: str, key: Any, option: Any) -> None:
    from jwins_jax.config import Config

    if not isinstance(key, str) or not NAME_RULE.match(key):
        _refuse(
            strategy,
            f"option name {key!r} is not allowed: use 1-40 lowercase letters, digits "
            "or '_', starting with a letter",
        )
    if not isinstance(option, Option):
        _refuse(strategy, f"option {key!r} must be a jwins_jax.options.Option")
    if option.kind not in _KINDS:
        _refuse(
            strategy,
            f"option {key!r} has kind {option.kind!r}; allowed: int, float, str, "
            "bool, tuple",
        )
    if key in OPTIONS:
        if option != OPTIONS[key]:
            _refuse(
                strategy,
                f"option {key!r} collides with the built-in option {key!r} "
                f"({OPTIONS[key].help}); reuse jwins_jax.sharing.OPTIONS[{key!r}] or "
                "choose another name",
            )
        return
    if key in Config.fields() or key in RESERVED_NAMES:
        _refuse(
            strategy,
            f"option {key!r} collides with the config field or command-line flag "
            f"{key!r}; choose another name",
        )
    for other in REGISTRY.values():
        if other.name != strategy and key in other.options:
            if other.options[key] != option:
                _refuse(
                    strategy,
                    f"option {key!r} collides with the option {key!r} of strategy "
                    f"{other.name!r} ({other.options[key].help}); reuse that Option "
                    "object or choose another name",
                )


def register(
    name: str,
    factory: Callable[..., Sharing],
    options: Mapping[str, Option] | None = None,
    *,
    replace: bool = False,
    source: str = "register()",
) -> Strategy:
    """Registers a sharing strategy under ``name``.

    Args:
        name: the strategy's name: 1-40 lowercase letters, digits or ``_``,
            starting with a letter.
        factory: ``factory(n_params, **params) -> Sharing``, with a default for
            every option in its signature (usually built by
            :func:`jwins_jax.sharing.blocks.compose`).
        options: parameter name -> :class:`Option` (help, type, check, traced or
            static). Built-in options may be reused by passing the same object
            (:data:`OPTIONS`); a new name must not be a config field, a built-in
            option, another strategy's option (unless the same Option) or a flag of
            the command line.
        replace: allow replacing a strategy registered before (never a built-in).
        source: where the registration comes from (for error messages).

    Returns:
        The registered :class:`Strategy`. Registering the same factory and options
        again under the same name returns the existing one.

    Raises:
        ConfigError: a bad name, a name already taken, a colliding or malformed
            option, or a factory without a valid default for an option.
    """
    options = dict(options or {})
    if not isinstance(name, str) or not NAME_RULE.match(name):
        raise ConfigError(
            f"cannot register sharing strategy {name!r}: use 1-40 lowercase letters, "
            "digits or '_', starting with a letter"
        )
    old = REGISTRY.get(name)
    if old is not None:
        if old.factory is factory and dict(old.options) == options:
            return old
        if old.source == "built-in":
            _refuse(name, "a built-in strategy has this name")
        if not replace:
            _refuse(
                name,
                f"the name is taken (registered by {old.source}); pass replace=True "
                "to replace it",
            )
    if not callable(factory):
        _refuse(name, "the factory is not callable")
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        _refuse(name, "the factory's signature cannot be read")
    first = next(iter(sig.parameters.values()), None)
    if first is None or first.kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        _refuse(name, "the factory must take n_params as its first argument")
    for key, option in options.items():
        _check_option(name, key, option)
        param = sig.parameters.get(key)
        if param is None or param.default is inspect.Parameter.empty:
            _refuse(name, f"the factory has no default for option {key!r}")
        try:
            option.validate(key, param.default)
        except ConfigError as err:
            _refuse(name, f"the default of option {key!r} is not allowed: {err}")
    strategy = Strategy(name, factory, options, source)
    REGISTRY[name] = strategy
    return strategy


def load_entry_points() -> None:
    """Registers the strategies of installed packages (entry-point group
    :data:`ENTRY_POINT_GROUP`), once per process.

    Each entry point names a :class:`Strategy`. One that fails to import or to
    register is skipped with a warning and recorded in :data:`ENTRY_POINT_ERRORS`
    (asking for it by name then says why it is missing).
    """
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    from importlib import metadata

    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {ep.name} = {ep.value!r}"
        try:
            spec = ep.load()
            if not isinstance(spec, Strategy):
                raise ConfigError(
                    f"{where} names a {type(spec).__name__}, not a "
                    "jwins_jax.sharing.Strategy"
                )
            if spec.name != ep.name:
                raise ConfigError(
                    f"{where} names strategy {spec.name!r}; the names must agree"
                )
            register(spec.name, spec.factory, spec.options, source=where)
        except Exception as err:  # noqa: BLE001 - a broken plug-in must not stop us
            text = " ".join(str(err).split())[:300]
            ENTRY_POINT_ERRORS[ep.name] = f"{type(err).__name__}: {text}"
            warnings.warn(
                f"jwins_jax: sharing strategy {where} failed to load: {text}",
                stacklevel=2,
            )


# ------------------------------------------------------------------------ look-ups
def strategies() -> tuple[str, ...]:
    """Every strategy name: the built-ins, then the registered ones."""
    load_entry_points()
    return tuple(REGISTRY)


def get(name: str) -> Strategy:
    """The strategy registered as ``name`` (entry points are read if needed).

    Raises:
        ConfigError: an unknown name, with the allowed ones.
    """
    if name not in REGISTRY:
        load_entry_points()
    if name not in REGISTRY:
        why = ENTRY_POINT_ERRORS.get(name)
        if why is not None:
            raise ConfigError(
                f"sharing={name!r} is installed but failed to load ({why})"
            )
        raise ConfigError(
            f"sharing={name!r} is unknown; allowed: {', '.join(strategies())}"
        )
    return REGISTRY[name]


def user_options() -> dict[str, Option]:
    """The options of registered strategies that are not built-in ones."""
    load_entry_points()
    out: dict[str, Option] = {}
    for s in REGISTRY.values():
        for key, option in s.options.items():
            if key not in OPTIONS:
                out.setdefault(key, option)
    return out


def option(name: str) -> Option | None:
    """The option ``name`` of any strategy (built-in or registered), or None."""
    if name in OPTIONS:
        return OPTIONS[name]
    return user_options().get(name)


def strategy_params(name: str) -> tuple[str, ...]:
    """The parameter names a strategy takes (besides ``n_params``)."""
    return get(name).params


def strategy_defaults(name: str) -> dict[str, Any]:
    """A strategy's parameters with their defaults."""
    return get(name).defaults


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Checks a strategy's parameters; returns them complete with defaults.

    Raises:
        ConfigError: unknown strategy, unknown parameter or a bad value.
    """
    strategy = get(name)
    for key in params:
        if key not in strategy.params:
            raise ConfigError(
                f"sharing {name!r} has no parameter {key!r}; allowed: "
                + (", ".join(strategy.params) or "none")
            )
    out = strategy.defaults
    for key, value in params.items():
        out[key] = strategy.options[key].validate(key, value)
    return out


def make_sharing(name: str, n_params: int, **params: Any) -> Sharing:
    """Builds the strategy ``name`` for flat models of ``n_params`` values.

    Raises:
        ConfigError: unknown name, unknown parameter or a bad parameter value.
    """
    full_params = validate_params(name, params)
    strategy = REGISTRY[name]
    sharing = strategy.factory(n_params, **full_params)
    if not isinstance(sharing, Sharing):
        raise TypeError(
            f"the factory of sharing strategy {name!r} returned a "
            f"{type(sharing).__name__}, not a jwins_jax.sharing.Sharing"
        )
    if strategy.source != "built-in":
        # a registered strategy's options are the registry's (its traced ones too)
        sharing = dataclasses.replace(
            sharing,
            name=name,
            params=full_params,
            options={**OPTIONS, **strategy.options},
        )
    return sharing


__all__ = [
    "ENTRY_POINT_ERRORS",
    "ENTRY_POINT_GROUP",
    "OPTIONS",
    "REGISTRY",
    "RoundInputs",
    "STRATEGIES",
    "Sharing",
    "Stats",
    "Strategy",
    "get",
    "load_entry_points",
    "make_sharing",
    "message_bytes",
    "option",
    "register",
    "strategies",
    "strategy_defaults",
    "strategy_params",
    "user_options",
    "validate_params",
]
