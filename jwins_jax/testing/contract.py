"""The contract every sharing strategy keeps, checked by one call (issue 19).

:func:`check_strategy` runs a strategy for a few rounds on a small irregular graph
and checks what the simulator relies on, with an :class:`AssertionError` naming the
strategy and the broken rule:

* **state**: ``init`` gives a pytree whose leaves all have the node axis first
  (offline nodes' rows are restored from it), and ``step`` keeps its structure,
  shapes and dtypes round after round;
* **models**: ``step`` returns ``(n, N)`` float32 models, finite for finite inputs;
* **stats**: ``sent``, ``meta_bytes``, ``receivers`` (int32) and ``full`` (bool),
  each ``(n,)``, and ``value_bytes`` (int32) if reported; ``receivers`` is the
  node's degree; ``0 <= sent <= L`` (L = ``info["coefficients"]``, else N); bytes
  are non-negative; a message without values has no value bytes and one with values
  has some; a full share sends all L values and no metadata;
* **determinism**: the same state, models and key give the same result, bit for bit;
* **one program**: the jitted step traces once over the rounds and over other values
  of the traced hyperparameters (they are arguments, not constants);
* **vmap**: a ``vmap`` over stacked states, models, keys and hyperparameters equals
  the configs one by one; with ``vmap_params``, each equals the strategy built with
  those values, and the two values make a difference;
* **locality**: a node's model after the round depends only on its own and its
  neighbours' models;
* **faults** (through :func:`jwins_jax.faults.sharing_step`): an offline node keeps
  its model and state bit for bit and sends nothing, and nobody depends on its
  model; a node does not depend on a neighbour whose link is down;
* **full share** (with ``full_params``, e.g. ``{"alpha": 1.0}``): the round equals
  full sharing (D-PSGD) on a static graph, with ``full`` set, all L values sent and
  no metadata.

The built-in strategies pass it in the test suite, and so does the example package
of ``examples/``. A strategy author calls it from a test::

    from jwins_jax.testing.contract import check_strategy

    def test_contract():
        check_strategy("mine", {"tau": 0.1}, vmap_params=[{"tau": 0.1}, {"tau": 0.3}])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jwins_jax import faults
from jwins_jax.sharing import Sharing, make_sharing
from jwins_jax.sharing.base import Cost
from jwins_jax.topology import NeighborTable, neighbor_table


def contract_graph(nodes: int) -> np.ndarray:
    """The kit's graph: a ring plus chords from node 0, so degrees differ (node 0
    has up to 5 neighbours, the others 2 or 3) and the table has padding."""
    if nodes < 6:
        raise ValueError(f"the contract graph needs at least 6 nodes, got {nodes}")
    adj = np.zeros((nodes, nodes), bool)
    for i in range(nodes):
        adj[i, (i + 1) % nodes] = adj[(i + 1) % nodes, i] = True
    for j in range(2, min(5, nodes - 2)):
        adj[0, j] = adj[j, 0] = True
    return adj


def _fail(name: str, what: str) -> None:
    raise AssertionError(f"strategy {name!r}: {what}")


def _leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _same_tree(name: str, a: Any, b: Any, what: str, exact: bool = True) -> None:
    if jax.tree.structure(a) != jax.tree.structure(b):
        _fail(name, f"{what}: the pytree structure differs")
    for x, y in zip(_leaves(a), _leaves(b)):
        if x.shape != y.shape or x.dtype != y.dtype:
            _fail(name, f"{what}: {x.shape} {x.dtype} != {y.shape} {y.dtype}")
        if exact and not np.array_equal(x, y, equal_nan=True):
            _fail(name, f"{what}: values differ")


def _close(name: str, a: Any, b: Any, what: str, tol: float) -> None:
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    if not np.isfinite(err) or err > tol * scale:
        _fail(name, f"{what}: max difference {err:.3g} > {tol:g} x {scale:.3g}")


def _check_fields(name: str, sh: Sharing, n_params: int) -> int:
    if not isinstance(sh, Sharing):
        _fail(name, f"the factory returned a {type(sh).__name__}, not a Sharing")
    if sh.n_params != n_params:
        _fail(name, f"n_params={sh.n_params}, built for {n_params}")
    if not isinstance(sh.cost, Cost):
        _fail(name, "cost is not a jwins_jax.sharing.base.Cost")
    for part in ("pre", "post", "per_value"):
        value = getattr(sh.cost, part)
        if not (np.isfinite(value) and value >= 0):
            _fail(name, f"cost.{part}={value!r} must be a finite number >= 0")
    missing = [p for p in sh.traced if p not in sh.params]
    if missing:
        _fail(name, f"traced parameters {missing} are not in params")
    length = int(sh.info.get("coefficients", n_params))
    if length < 1:
        _fail(name, f"info['coefficients']={length} must be >= 1")
    return length


def _check_state(name: str, state: Any, nodes: int) -> None:
    for leaf in _leaves(state):
        if leaf.ndim == 0 or leaf.shape[0] != nodes:
            _fail(
                name,
                f"a state leaf of shape {leaf.shape} lacks the node axis ({nodes}, "
                "...) first: offline nodes could not keep their state",
            )


def _check_stats(
    name: str, stats: dict[str, Any], table: NeighborTable, length: int, where: str
) -> None:
    nodes = table.idx.shape[0]
    kinds = {
        "sent": np.int32,
        "meta_bytes": np.int32,
        "receivers": np.int32,
        "full": np.bool_,
    }
    if "value_bytes" in stats:
        kinds["value_bytes"] = np.int32
    for key, dtype in kinds.items():
        if key not in stats:
            _fail(name, f"{where}: stats lack {key!r}")
        a = np.asarray(stats[key])
        if a.shape != (nodes,) or a.dtype != dtype:
            _fail(
                name,
                f"{where}: stats[{key!r}] is {a.shape} {a.dtype}, expected "
                f"({nodes},) {np.dtype(dtype)}",
            )
    sent = np.asarray(stats["sent"])
    meta = np.asarray(stats["meta_bytes"])
    full = np.asarray(stats["full"])
    values = np.asarray(stats.get("value_bytes", 4 * sent))
    if not np.array_equal(np.asarray(stats["receivers"]), np.asarray(table.degree)):
        _fail(name, f"{where}: receivers must be each node's degree in the table")
    if np.any(sent < 0) or np.any(sent > length):
        _fail(name, f"{where}: sent={sent.tolist()} must lie in [0, {length}]")
    if np.any(meta < 0) or np.any(values < 0):
        _fail(name, f"{where}: byte counts must be >= 0")
    if np.any((sent == 0) & (values != 0)):
        _fail(name, f"{where}: a message without values has value bytes")
    if np.any((sent > 0) & (values <= 0)):
        _fail(name, f"{where}: a message with values has no value bytes")
    if np.any(full & (sent != length)):
        _fail(name, f"{where}: a full share must send all {length} values")
    if np.any(full & (meta != 0)):
        _fail(name, f"{where}: a full share must carry no metadata")


def check_strategy(
    strategy: str | Sharing,
    params: Mapping[str, Any] | None = None,
    *,
    vmap_params: Sequence[Mapping[str, Any]] | None = None,
    full_params: Mapping[str, Any] | None = None,
    n_params: int = 301,
    nodes: int = 8,
    rounds: int = 3,
    tol: float = 1e-5,
    seed: int = 0,
) -> dict[str, Any]:
    """Checks a strategy's contract (the module docstring); raises AssertionError.

    Args:
        strategy: a registered strategy's name (built with
            ``make_sharing(strategy, n_params, **params)``) or a built
            :class:`Sharing` (then ``vmap_params`` and ``full_params`` cannot be
            used: they build the strategy again).
        params: the strategy's parameters (defaults for the others).
        vmap_params: two sets of traced values (e.g. ``[{"alpha": 0.1}, {"alpha":
            0.3}]``) for the vmap check; None: the same values twice.
        full_params: parameters that make every node share everything on a static
            graph (e.g. ``{"alpha": 1.0}``); None: not checked (the strategy has no
            such setting).
        n_params: N of the test models.
        nodes: n, at least 6.
        rounds: rounds run with the state carried.
        tol: relative tolerance of comparisons between programs (vmapped against
            one by one, against full sharing).
        seed: seed of the test models and keys.

    Returns:
        ``{"strategy": name, "checks": [...]}``: the checks that ran.

    Raises:
        AssertionError: a broken rule, naming the strategy and the rule.
        TypeError: ``vmap_params`` or ``full_params`` with a built Sharing.
    """
    params = dict(params or {})
    if isinstance(strategy, Sharing):
        if vmap_params is not None or full_params is not None:
            raise TypeError("vmap_params and full_params need a registered name")
        sh, name = strategy, strategy.name
        n_params = sh.n_params
    else:
        name = strategy
        sh = make_sharing(name, n_params, **params)
    checks: list[str] = []
    length = _check_fields(name, sh, n_params)
    checks.append("fields")

    adj = contract_graph(nodes)
    table = neighbor_table(adj)
    rng = np.random.default_rng(seed)
    x0 = np.repeat(rng.standard_normal((1, n_params)).astype(np.float32), nodes, 0)
    x0 = jnp.asarray(x0)
    deltas = jnp.asarray(
        0.1 * rng.standard_normal((rounds + 2, nodes, n_params)), jnp.float32
    )
    keys = jax.random.split(jax.random.PRNGKey(seed), rounds + 2)

    state0 = sh.init(x0)
    _check_state(name, state0, nodes)
    checks.append("state")

    traces = [0]

    def raw_step(state, x, key, table, hp):
        return sh.step(state, x, key, table, hp)

    def counted_step(state, x, key, table, hp):
        traces[0] += 1
        return sh.step(state, x, key, table, hp)

    step = jax.jit(counted_step)
    hp = sh.hp

    # ---- rounds with the state carried
    state, x = state0, x0
    first = None
    for r in range(rounds):
        x = x + deltas[r]
        x_new, new_state, stats = step(state, x, keys[r], table, hp)
        if first is None:
            first = (x_new, new_state, stats)
        where = f"round {r}"
        xs = np.asarray(x_new)
        if xs.shape != (nodes, n_params) or xs.dtype != np.float32:
            _fail(name, f"{where}: models are {xs.shape} {xs.dtype}")
        if not np.all(np.isfinite(xs)):
            _fail(name, f"{where}: models are not finite")
        _same_tree(name, new_state, state0, f"{where}: state", exact=False)
        _check_stats(name, stats, table, length, where)
        state, x = new_state, x_new
    checks += ["models", "stats", "bytes"]

    again = step(state0, x0 + deltas[0], keys[0], table, hp)
    _same_tree(name, again, first, "the same inputs and key gave another result")
    checks.append("determinism")
    if traces[0] != 1:
        _fail(name, f"the jitted step traced {traces[0]} times over {rounds} rounds")

    # ---- vmap over configs, traced hyperparameters as arguments
    if vmap_params is None:
        hps = [hp, hp]
        builds = None
    else:
        if len(vmap_params) != 2:
            raise ValueError("vmap_params must hold two sets of values")
        builds = [make_sharing(name, n_params, **{**params, **v}) for v in vmap_params]
        hps = [b.hp for b in builds]
    stacked_hp = jax.tree.map(lambda *a: jnp.stack(a), *hps)
    xs = jnp.stack([x0 + deltas[0], x0 - deltas[1]])
    states = jax.tree.map(lambda *a: jnp.stack(a), state0, sh.init(x0 + deltas[2]))
    ks = jnp.stack([keys[0], keys[1]])
    out = jax.jit(jax.vmap(raw_step, in_axes=(0, 0, 0, None, 0)))(
        states, xs, ks, table, stacked_hp
    )
    singles = []
    for b in range(2):
        state_b = jax.tree.map(lambda a: a[b], states)
        single = step(state_b, xs[b], ks[b], table, hps[b])
        singles.append(single)
        _close(name, out[0][b], single[0], f"vmapped config {b} against alone", tol)
        for key in single[2]:
            if not np.array_equal(np.asarray(out[2][key][b]), single[2][key]):
                _fail(name, f"vmapped config {b}: stats[{key!r}] differ from alone")
        if builds is not None:
            own = builds[b].step(state_b, xs[b], ks[b], table, builds[b].hp)
            _close(name, single[0], own[0], f"built with {vmap_params[b]}", tol)
    if traces[0] != 1:
        _fail(name, "another value of the traced hyperparameters retraced the step")
    if builds is not None:
        again = step(state0, xs[0], ks[0], table, hps[1])
        differ = not np.array_equal(np.asarray(again[0]), np.asarray(singles[0][0]))
        differ |= not np.array_equal(again[2]["sent"], singles[0][2]["sent"])
        if not differ:
            _fail(name, f"the traced values {vmap_params} make no difference")
    checks += ["vmap", "traces"]

    # ---- locality: a node hears its neighbours only
    x1 = x0 + deltas[0]
    base = first[0]
    j = nodes // 2 + 1
    bump = x1.at[j].add(0.5 * deltas[1][j] + 0.25)
    moved = np.asarray(step(state0, bump, keys[0], table, hp)[0])
    far = ~adj[j] & (np.arange(nodes) != j)
    if not np.array_equal(moved[far], np.asarray(base)[far]):
        _fail(name, f"changing node {j}'s model changed nodes that are not its peers")
    checks.append("locality")

    # ---- faults: an offline node and a failed link
    off = nodes - 1
    online = jnp.asarray(np.arange(nodes) != off)
    a, b = 2, 3  # a ring link
    idx = np.asarray(table.idx)
    up = np.ones(idx.shape, bool)
    up[a][idx[a] == b] = False
    up[b][idx[b] == a] = False
    link_up = jnp.asarray(up)

    def fault_step(state, x, key, table, hp, online, link_up):
        return faults.sharing_step(sh, state, x, key, table, hp, online, link_up)

    fstep = jax.jit(fault_step)
    fx, fstate, fstats = fstep(state0, x1, keys[0], table, hp, online, link_up)
    if not np.array_equal(np.asarray(fx)[off], np.asarray(x1)[off]):
        _fail(name, "an offline node's model changed")
    for new, old in zip(_leaves(fstate), _leaves(state0)):
        if not np.array_equal(new[off], old[off]):
            _fail(name, "an offline node's state changed")
    for key in ("sent", "meta_bytes", "receivers", "value_bytes"):
        if key in fstats and int(np.asarray(fstats[key])[off]) != 0:
            _fail(name, f"an offline node has stats[{key!r}] != 0")
    if not np.all(np.isfinite(np.asarray(fx))):
        _fail(name, "models under faults are not finite")
    shaken = x1.at[off].add(0.5).at[b].add(deltas[1][b] + 0.25)
    gx = np.asarray(fstep(state0, shaken, keys[0], table, hp, online, link_up)[0])
    if not np.array_equal(gx[a], np.asarray(fx)[a]):
        _fail(name, f"node {a} depends on node {b} over a failed link")
    # the offline node's peers that are not peers of b (b was changed too)
    quiet = adj[off] & ~adj[b] & (np.arange(nodes) != b)
    if not np.array_equal(gx[quiet], np.asarray(fx)[quiet]):
        _fail(name, "a node depends on an offline neighbour's model")
    checks.append("faults")

    # ---- full shares equal full sharing
    if full_params is not None:
        sh_full = make_sharing(name, n_params, **{**params, **full_params})
        reference = make_sharing("full", n_params)
        got = sh_full.step(sh_full.init(x0), x1, keys[0], table, sh_full.hp)
        want = reference.step(reference.init(x0), x1, keys[0], table, reference.hp)
        _close(name, got[0], want[0], f"with {dict(full_params)} against full", tol)
        stats = got[2]
        if not np.all(np.asarray(stats["full"])):
            _fail(name, f"with {dict(full_params)} not every node reports full")
        _check_stats(name, stats, table, length, "full share")
        checks.append("full share")
    return {"strategy": name, "checks": checks}


__all__ = ["check_strategy", "contract_graph"]
