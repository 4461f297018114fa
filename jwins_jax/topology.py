"""Communication graphs and Metropolis-Hastings weights (SPEC 4.0, 6).

The host side works with numpy: a graph is an ``(n, n)`` boolean, symmetric adjacency
matrix without self loops. It comes from an ``.edges`` file (SPEC 6.1) or from a
generator (SPEC 6.2: random regular, ring, 2-D torus, complete, star, small world).

The device side is a :class:`NeighborTable`: every node's neighbour ids padded to a
fixed width ``D`` together with their Metropolis-Hastings weights

    w_ij = 1 / (1 + max(d_i, d_j)),   w_ii = 1 - sum_j w_ij,

always computed from the degrees of the graph in use (SPEC "Our decisions"), so the
mixing matrix W is symmetric and doubly stochastic, also on dynamic graphs.

Dynamic topologies (SPEC 6.4) draw a fresh random d-regular graph every round, inside
the jitted round from the round's key (:func:`random_regular_table`): no table is
banked, so memory does not grow with the number of rounds.

The random regular generators are our own (random stub pairings, see :func:`regular`
and :func:`random_regular_table`), so the graphs differ from the networkx graphs of
the original for the same seed.
"""

from __future__ import annotations

import os
import pathlib

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jwins_jax import resources
from jwins_jax.errors import ConfigError

GRAPHS: tuple[str, ...] = (
    "edges",
    "regular",
    "ring",
    "torus",
    "complete",
    "star",
    "small_world",
)

# The paper's 96-node graph (SPEC 6.3), installed with the package.
PAPER_GRAPH: pathlib.Path = resources.path(resources.PAPER_GRAPH_NAME)


# --------------------------------------------------------------------------- files


def read_edges(path: str | os.PathLike, n: int | None = None) -> np.ndarray:
    """Reads an ``.edges`` file (SPEC 6.1).

    The first non-blank line holds the node count; every further non-blank line is
    ``u v`` and adds the undirected edge {u, v}. Duplicates and both directions are
    allowed.

    Args:
        path: the file.
        n: the expected node count, or None to accept the file's.

    Returns:
        ``(n, n)`` bool symmetric adjacency without self loops.

    Raises:
        ConfigError: missing or empty file, bad node count, malformed line, node id
            out of range, self loop, or a node count different from ``n``.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"edges file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"edges file {path} cannot be read: {err}") from None

    lines = [
        (number, line.split())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not lines:
        raise ConfigError(
            f"edges file {path} is empty: line 1 must hold the node count"
        )
    count_line, fields = lines[0]
    if len(fields) != 1 or not _is_int(fields[0]) or int(fields[0]) < 1:
        raise ConfigError(
            f"edges file {path} line {count_line}: expected the node count "
            f"(one positive integer), got {' '.join(fields)!r}"
        )
    count = int(fields[0])
    if n is not None and count != n:
        raise ConfigError(f"edges file {path} has {count} nodes but nodes={n}")

    adj = np.zeros((count, count), dtype=bool)
    for number, fields in lines[1:]:
        if len(fields) != 2 or not all(_is_int(f) for f in fields):
            raise ConfigError(
                f"edges file {path} line {number}: expected two node ids 'u v', "
                f"got {' '.join(fields)!r}"
            )
        u, v = int(fields[0]), int(fields[1])
        for node in (u, v):
            if not 0 <= node < count:
                raise ConfigError(
                    f"edges file {path} line {number}: node id {node} is out of "
                    f"range, ids must be in 0..{count - 1}"
                )
        if u == v:
            raise ConfigError(
                f"edges file {path} line {number}: self loop {u} {v} is not allowed"
            )
        adj[u, v] = adj[v, u] = True
    return adj


def write_edges(adj: np.ndarray, path: str | os.PathLike) -> None:
    """Writes an adjacency matrix as an ``.edges`` file (SPEC 6.1).

    Like the original, every edge appears twice: one ``u v`` line per neighbour v of
    every node u, in ascending order.

    Args:
        adj: ``(n, n)`` bool symmetric adjacency without self loops.
        path: the file to write.
    """
    adj = _check_adjacency(adj)
    rows, cols = np.nonzero(adj)
    body = "".join(f"{u} {v}\n" for u, v in zip(rows.tolist(), cols.tolist()))
    pathlib.Path(path).write_text(f"{adj.shape[0]}\n{body}")


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------- generators


def ring(n: int) -> np.ndarray:
    """Ring i <-> i+1 mod n (SPEC 6.2 ``Ring``).

    Args:
        n: number of nodes, at least 2.

    Returns:
        ``(n, n)`` bool adjacency.
    """
    n = _check_n(n)
    adj = np.zeros((n, n), dtype=bool)
    nodes = np.arange(n)
    adj[nodes, (nodes + 1) % n] = True
    return adj | adj.T


def complete(n: int) -> np.ndarray:
    """Fully connected graph (SPEC 6.2 ``FullyConnected``).

    Args:
        n: number of nodes, at least 2.

    Returns:
        ``(n, n)`` bool adjacency.
    """
    n = _check_n(n)
    return ~np.eye(n, dtype=bool)


def star(n: int) -> np.ndarray:
    """Star with hub 0 connected to nodes 1..n-1 (SPEC 6.2 ``Star``).

    Args:
        n: number of nodes, at least 2.

    Returns:
        ``(n, n)`` bool adjacency.
    """
    n = _check_n(n)
    adj = np.zeros((n, n), dtype=bool)
    adj[0, 1:] = adj[1:, 0] = True
    return adj


def torus(n: int) -> np.ndarray:
    """2-D torus with 4 neighbours per node.

    The grid has ``rows x cols = n`` with ``rows`` the largest divisor of n not above
    sqrt(n); node ``r * cols + c`` is linked to its up, down, left and right
    neighbours with wrap-around.

    Args:
        n: number of nodes; it needs a divisor between 3 and sqrt(n).

    Returns:
        ``(n, n)`` bool adjacency.

    Raises:
        ConfigError: when the grid would have fewer than 3 rows.
    """
    n = _check_n(n)
    rows = max(r for r in range(1, int(np.sqrt(n)) + 1) if n % r == 0)
    if rows < 3:
        raise ConfigError(
            f"torus needs nodes with a divisor between 3 and sqrt(nodes) (e.g. 9, 12, "
            f"15, 16, 96), got nodes={n}"
        )
    cols = n // rows
    grid = np.arange(n).reshape(rows, cols)
    adj = np.zeros((n, n), dtype=bool)
    for shifted in (np.roll(grid, 1, axis=0), np.roll(grid, 1, axis=1)):
        adj[grid.ravel(), shifted.ravel()] = True
    return adj | adj.T


def regular(n: int, d: int, seed: int) -> np.ndarray:
    """Random d-regular graph; the ring is added if it is disconnected (SPEC 6.2).

    First a batch of uniform random stub pairings (d stubs per node) is drawn and the
    first one without loops and repeated edges is taken: exactly uniform over the
    d-regular graphs (tried for d <= 4). If none of them is simple, the stubs are
    paired incrementally, never creating a loop or a repeated edge, which is close to
    uniform. For ``d > (n - 1) / 2`` the complement of a random
    ``(n - 1 - d)``-regular graph is returned instead.

    Args:
        n: number of nodes, at least 2.
        d: degree, 1 <= d < n, with n * d even.
        seed: non-negative seed of the numpy generator.

    Returns:
        ``(n, n)`` bool adjacency.

    Raises:
        ConfigError: for a bad n, d or seed.
    """
    n = _check_n(n)
    d = int(d)
    if not 1 <= d < n:
        raise ConfigError(
            f"regular graph degree={d} is not allowed with nodes={n}: "
            f"degree must be in 1..{n - 1}"
        )
    if n * d % 2:
        raise ConfigError(
            f"regular graph needs nodes*degree even, got nodes={n}, degree={d}"
        )
    adj = _random_regular(n, d, _rng(seed))
    if not is_connected(adj):
        adj |= ring(n)
    return adj


def small_world(n: int, k_over_2: int, beta: float, seed: int) -> np.ndarray:
    """Watts-Strogatz small world plus the ring (SPEC 6.2 ``SmallWorld``).

    Starts from the ring lattice where node i is linked to i +- 1..k_over_2. For every
    offset j = 1..k_over_2 and node i in order, the edge {i, i+j} is rewired with
    probability ``beta`` to {i, w}, w uniform among the nodes not yet linked to i.
    The ring i <-> i+1 is added at the end, always.

    Args:
        n: number of nodes, at least 2.
        k_over_2: lattice half-width, 1 <= k_over_2 and 2 * k_over_2 < n.
        beta: rewiring probability in [0, 1].
        seed: non-negative seed of the numpy generator.

    Returns:
        ``(n, n)`` bool adjacency.

    Raises:
        ConfigError: for a bad n, k_over_2, beta or seed.
    """
    n = _check_n(n)
    k_over_2 = int(k_over_2)
    if not 1 <= k_over_2 <= (n - 1) // 2:
        raise ConfigError(
            f"small_world k_over_2={k_over_2} is not allowed with nodes={n}: "
            f"it must be in 1..{max(1, (n - 1) // 2)}"
        )
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ConfigError(
            f"small_world beta={beta} is not allowed: it must be in [0, 1]"
        )
    rng = _rng(seed)
    nodes = np.arange(n)
    adj = np.zeros((n, n), dtype=bool)
    for j in range(1, k_over_2 + 1):
        adj[nodes, (nodes + j) % n] = True
    adj |= adj.T
    for j in range(1, k_over_2 + 1):
        rewire = rng.random(n) < beta
        for i in np.flatnonzero(rewire).tolist():
            v = (i + j) % n
            free = np.flatnonzero(~adj[i])
            free = free[free != i]
            if not adj[i, v] or free.size == 0:
                continue
            w = int(rng.choice(free))
            adj[i, v] = adj[v, i] = False
            adj[i, w] = adj[w, i] = True
    return adj | ring(n)


def is_connected(adj: np.ndarray) -> bool:
    """Whether the undirected graph is connected (breadth-first search from node 0).

    Args:
        adj: ``(n, n)`` bool adjacency.

    Returns:
        True when every node is reachable from node 0.
    """
    return bool(_reachable(np.asarray(adj, dtype=bool)).all())


def make_graph(
    name: str,
    n: int,
    *,
    degree: int = 4,
    edges_file: str | os.PathLike | None = None,
    seed: int = 0,
    beta: float = 0.1,
) -> np.ndarray:
    """Builds a named graph and checks that it is connected.

    Args:
        name: one of :data:`GRAPHS`.
        n: number of nodes, at least 2.
        degree: degree of "regular"; "small_world" uses ``k_over_2 =
            max(1, degree // 2)``; the other graphs ignore it.
        edges_file: file of "edges" (default :data:`PAPER_GRAPH`).
        seed: seed of the random graphs.
        beta: rewiring probability of "small_world".

    Returns:
        ``(n, n)`` bool adjacency.

    Raises:
        ConfigError: unknown name, n < 2, bad generator arguments, a bad edges file,
            or a disconnected graph.
    """
    if name not in GRAPHS:
        raise ConfigError(
            f"graph={name!r} is not known: allowed graphs are {', '.join(GRAPHS)}"
        )
    n = _check_n(n)
    source = ""
    if name == "edges":
        path = PAPER_GRAPH if edges_file is None else pathlib.Path(edges_file)
        adj = read_edges(path, n)
        source = f" from {path}"
    elif name == "regular":
        adj = regular(n, degree, seed)
    elif name == "ring":
        adj = ring(n)
    elif name == "torus":
        adj = torus(n)
    elif name == "complete":
        adj = complete(n)
    elif name == "star":
        adj = star(n)
    else:
        adj = small_world(n, max(1, int(degree) // 2), beta, seed)
    reach = _reachable(adj)
    if not reach.all():
        missing = np.flatnonzero(~reach)
        shown = ", ".join(str(i) for i in missing[:10].tolist())
        more = ", ..." if missing.size > 10 else ""
        raise ConfigError(
            f"graph {name!r}{source} is disconnected: {missing.size} of {n} nodes "
            f"cannot reach node 0 (nodes {shown}{more}); a connected graph is required"
        )
    return adj


def mh_matrix(adj: np.ndarray) -> np.ndarray:
    """Dense Metropolis-Hastings mixing matrix (SPEC 4.0).

    Args:
        adj: ``(n, n)`` bool symmetric adjacency without self loops.

    Returns:
        ``(n, n)`` float64 W with ``w_ij = 1 / (1 + max(d_i, d_j))`` on edges, 0 off
        edges, and ``w_ii = 1 - sum_j w_ij``.
    """
    adj = _check_adjacency(adj)
    deg = adj.sum(axis=1)
    w = np.where(adj, 1.0 / (1.0 + np.maximum(deg[:, None], deg[None, :])), 0.0)
    np.fill_diagonal(w, 1.0 - w.sum(axis=1))
    return w


# ------------------------------------------------------------------- device tables


@flax.struct.dataclass
class NeighborTable:
    """Padded neighbour lists with Metropolis-Hastings weights."""

    idx: jax.Array  # (n, D) int32 neighbour ids ascending, padded with own id
    weight: jax.Array  # (n, D) float32 MH weight w_ij, 0 on padding
    self_weight: jax.Array  # (n,) float32 w_ii
    degree: jax.Array  # (n,) int32 number of neighbours (= receivers of each message)


def neighbor_table(adj: np.ndarray, d_max: int | None = None) -> NeighborTable:
    """Device neighbour table of a graph.

    Args:
        adj: ``(n, n)`` bool symmetric adjacency without self loops.
        d_max: table width D, at least the maximum degree; None uses the maximum
            degree.

    Returns:
        NeighborTable with ``(n, D)`` idx / weight and ``(n,)`` self_weight / degree.

    Raises:
        ConfigError: when ``d_max`` is below the maximum degree.
    """
    adj = _check_adjacency(adj)
    arrays = _table_arrays(adj, d_max)
    return NeighborTable(**{k: jnp.asarray(v) for k, v in arrays.items()})


def check_dynamic(n: int, d: int) -> None:
    """Checks that :func:`random_regular_table` can draw ``d``-regular graphs on ``n``.

    Raises:
        ConfigError: for ``d`` outside ``2..n-1`` or ``n * d`` odd.
    """
    n, d = _check_n(n), int(d)
    if not 2 <= d < n:
        raise ConfigError(
            f"degree={d} is not allowed with nodes={n} on a dynamic graph: the degree "
            f"must be in 2..{n - 1} (a 1-regular graph is a matching, never connected)"
        )
    if n * d % 2:
        raise ConfigError(
            f"a dynamic d-regular graph needs nodes*degree even, got nodes={n}, "
            f"degree={d}"
        )


# Bounds of the loops of random_regular_table: switches that repair loops and repeated
# edges, and rounds of component merging.
REPAIR_STEPS = 4096
MERGE_STEPS = 64


def random_regular_table(key: jax.Array, n: int, d: int) -> NeighborTable:
    """A random d-regular graph drawn inside a jitted program (SPEC 6.4 dynamic rounds).

    ``jax``-only and of static shape, so a round draws its graph from its own key
    instead of reading it from a bank of tables: nothing on the host or device grows
    with the number of rounds.

    1. **Configuration model**: the ``n * d`` stubs (d per node) are paired by a
       random permutation.
    2. **Repair**: while a pair is a self loop or repeats an earlier pair, it is
       switched with a random other pair ``{u, v}, {x, y} -> {u, x}, {v, y}``, one
       switch per step (a draw has about ``(d - 1) / 2 + (d - 1)^2 / 4`` bad pairs).
    3. **Connectivity**: components are found by min-label propagation with pointer
       jumping; while there are several, the components are taken in pairs and a
       random edge of each is switched with the other's (the two new edges join the
       two components and can be neither loops nor repeats).

    Every node then has exactly ``d`` neighbours and the graph is connected.
    Exceptions, both very rare and bounded so the program always ends: pairs still bad
    after :data:`REPAIR_STEPS` switches are dropped (their two nodes get degree
    ``d - 1``, their table slot is padding); with odd ``d`` a switch of two bridges
    joins nothing, and a graph still disconnected after :data:`MERGE_STEPS` rounds of
    merging is used as drawn. The distribution is close to, not exactly, uniform over
    connected d-regular graphs.

    This differs from the original (SPEC 6.4: networkx's ``random_regular_graph``
    with seed ``s * 100000 + t``, plus the ring when disconnected): the graphs are
    other draws of the same family, and a disconnected draw is joined by switches that
    keep every degree ``d`` (a ring would raise some degrees to ``d + 2``).

    Args:
        key: the round's graph key.
        n: number of nodes (static).
        d: degree (static), ``2 <= d < n`` and ``n * d`` even
            (:func:`check_dynamic`).

    Returns:
        NeighborTable of width ``d`` with Metropolis-Hastings weights from the drawn
        degrees, neighbour ids ascending.
    """
    k_perm, k_repair, k_merge = jax.random.split(key, 3)
    stubs = jnp.repeat(jnp.arange(n, dtype=jnp.int32), d)
    _, stubs = jax.lax.sort((jax.random.bits(k_perm, stubs.shape), stubs), num_keys=2)
    u, v = stubs[0::2], stubs[1::2]
    u, v = _repair(k_repair, u, v)
    bad = _bad_pairs(u, v)
    u, v = _merge_components(k_merge, u, v, bad, n)
    return _pairs_table(u, v, bad, n, d)


def _bad_pairs(u: jax.Array, v: jax.Array) -> jax.Array:
    """(E,) bool: self loops and every repeat of an earlier pair (first one kept)."""
    lo, hi = jnp.minimum(u, v), jnp.maximum(u, v)
    order = jnp.arange(u.shape[0], dtype=jnp.int32)
    lo_s, hi_s, pos = jax.lax.sort((lo, hi, order), num_keys=3)
    repeat = jnp.concatenate(
        [jnp.zeros(1, bool), (lo_s[1:] == lo_s[:-1]) & (hi_s[1:] == hi_s[:-1])]
    )
    return (u == v) | jnp.zeros_like(repeat).at[pos].set(repeat)


def _repair(key: jax.Array, u: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    edges = u.shape[0]

    def cond(carry):
        step, u, v, bad = carry
        return (step < REPAIR_STEPS) & bad.any()

    def body(carry):
        step, u, v, bad = carry
        k_pick, k_flip = jax.random.split(jax.random.fold_in(key, step))
        e = jnp.argmax(bad)
        f = (e + 1 + jax.random.randint(k_pick, (), 0, edges - 1)) % edges
        flip = jax.random.bernoulli(k_flip)
        x, y = jnp.where(flip, v[f], u[f]), jnp.where(flip, u[f], v[f])
        # {a, b}, {x, y} -> {a, x}, {b, y}
        u2, v2 = u.at[f].set(v[e]), v.at[e].set(x).at[f].set(y)
        return step + 1, u2, v2, _bad_pairs(u2, v2)

    init = (jnp.int32(0), u, v, _bad_pairs(u, v))
    _, u, v, _ = jax.lax.while_loop(cond, body, init)
    return u, v


def _components(u: jax.Array, v: jax.Array, live: jax.Array, n: int) -> jax.Array:
    """(n,) the smallest node id of each node's component (over the ``live`` pairs)."""
    uu = jnp.where(live, u, v)  # a dead pair joins a node to itself

    def body(carry):
        label, _ = carry
        new = label.at[uu].min(label[v]).at[v].min(label[uu])
        new = new[new]  # pointer jumping: a label is a node of the same component
        return new, (new != label).any()

    label0 = jnp.arange(n, dtype=jnp.int32)
    return jax.lax.while_loop(lambda c: c[1], body, (label0, jnp.bool_(True)))[0]


def _merge_components(
    key: jax.Array, u: jax.Array, v: jax.Array, bad: jax.Array, n: int
) -> tuple[jax.Array, jax.Array]:
    edges = u.shape[0]
    live = ~bad

    def cond(carry):
        step, u, v, label = carry
        return (step < MERGE_STEPS) & (label != 0).any()

    def body(carry):
        step, u, v, label = carry
        # one random live edge per component: the live edge of least random priority
        top = jnp.uint32(0xFFFFFFFF)
        prio = jax.random.bits(jax.random.fold_in(key, step), (edges,))
        prio = jnp.where(live, prio, top)
        comp = label[u]
        least = jnp.full(n, top, jnp.uint32).at[comp].min(prio)
        chosen = live & (prio == least[comp])
        ids = jnp.where(chosen, jnp.arange(edges, dtype=jnp.int32), edges)
        best = jnp.full(n, edges, jnp.int32).at[comp].min(ids)
        roots = jnp.sort(jnp.where(label == jnp.arange(n), jnp.arange(n), n))
        # components 2j and 2j+1 (in root order) swap an edge each
        first, second = roots[0::2], roots[1::2]
        if second.shape[0] < first.shape[0]:
            second = jnp.concatenate([second, jnp.full(1, n, second.dtype)])
        e1 = best[jnp.minimum(first, n - 1)]
        e2 = best[jnp.minimum(second, n - 1)]
        pair = (first < n) & (second < n) & (e1 < edges) & (e2 < edges)
        e1 = jnp.where(pair, e1, edges)  # edges: out of range, dropped by the scatter
        e2 = jnp.where(pair, e2, edges)
        c = u[jnp.minimum(e2, edges - 1)]
        b = v[jnp.minimum(e1, edges - 1)]
        # {a, b}, {c, e} -> {a, c}, {b, e}
        u = u.at[e2].set(b, mode="drop")
        v = v.at[e1].set(c, mode="drop")
        return step + 1, u, v, _components(u, v, live, n)

    init = (jnp.int32(0), u, v, _components(u, v, live, n))
    _, u, v, _ = jax.lax.while_loop(cond, body, init)
    return u, v


def _pairs_table(
    u: jax.Array, v: jax.Array, bad: jax.Array, n: int, d: int
) -> NeighborTable:
    """The (n, d) table of a pairing in which every node has d stubs."""
    src = jnp.concatenate([u, v])
    dst = jnp.concatenate([jnp.where(bad, u, v), jnp.where(bad, v, u)])
    pad = jnp.concatenate([bad, bad]).astype(jnp.int32)
    src, pad, dst = jax.lax.sort((src, pad, dst), num_keys=3)
    idx = dst.reshape(n, d)
    valid = pad.reshape(n, d) == 0
    degree = valid.sum(axis=1).astype(jnp.int32)
    weight = jnp.where(
        valid, 1.0 / (1.0 + jnp.maximum(degree[:, None], degree[idx])), 0.0
    ).astype(jnp.float32)
    return NeighborTable(
        idx=idx,
        weight=weight,
        self_weight=1.0 - weight.sum(axis=1),
        degree=degree,
    )


# ------------------------------------------------------------------------ helpers


def _check_n(n: int) -> int:
    n = int(n)
    if n < 2:
        raise ConfigError(f"nodes={n} is not allowed: a graph needs at least 2 nodes")
    return n


def _rng(seed: int) -> np.random.Generator:
    seed = int(seed)
    if seed < 0:
        raise ConfigError(f"graph seed={seed} is not allowed: must be >= 0")
    return np.random.default_rng(seed)


def _check_adjacency(adj: np.ndarray) -> np.ndarray:
    adj = np.asarray(adj)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ConfigError(f"adjacency must be a square (n, n) matrix, got {adj.shape}")
    adj = adj.astype(bool)
    if (adj != adj.T).any():
        raise ConfigError("adjacency must be symmetric (undirected graph)")
    if adj.diagonal().any():
        raise ConfigError("adjacency must not contain self loops")
    return adj


def _reachable(adj: np.ndarray) -> np.ndarray:
    """(n,) bool: nodes reachable from node 0."""
    seen = np.zeros(adj.shape[0], dtype=bool)
    seen[0] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = adj[frontier].any(axis=0) & ~seen
        seen |= frontier
    return seen


def _table_arrays(adj: np.ndarray, d_max: int | None) -> dict[str, np.ndarray]:
    """numpy fields of a NeighborTable for one checked adjacency."""
    n = adj.shape[0]
    deg = adj.sum(axis=1)
    max_deg = int(deg.max(initial=0))
    width = max_deg if d_max is None else int(d_max)
    if width < max_deg:
        raise ConfigError(
            f"d_max={width} is too small: the graph has a node of degree {max_deg}"
        )
    rows, cols = np.nonzero(adj)  # row-major: each node's neighbours ascending
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    slot = np.arange(rows.size) - start[rows]
    idx = np.repeat(np.arange(n)[:, None], width, axis=1)  # padding: own id
    idx[rows, slot] = cols
    valid = np.arange(width)[None, :] < deg[:, None]
    weight = np.where(valid, 1.0 / (1.0 + np.maximum(deg[:, None], deg[idx])), 0.0)
    return {
        "idx": idx.astype(np.int32),
        "weight": weight.astype(np.float32),
        "self_weight": (1.0 - weight.sum(axis=1)).astype(np.float32),
        "degree": deg.astype(np.int32),
    }


def _random_regular(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Random simple d-regular graph (no connectivity guarantee)."""
    if 2 * d > n - 1:
        return ~_random_regular(n, n - 1 - d, rng) & ~np.eye(n, dtype=bool)
    adj = _simple_pairing(n, d, rng)
    for _ in range(1000):
        if adj is not None:
            return adj
        adj = _stub_pairing(n, d, rng)
    raise RuntimeError(f"could not draw a {d}-regular graph on {n} nodes")


def _simple_pairing(n: int, d: int, rng: np.random.Generator) -> np.ndarray | None:
    """Exactly uniform d-regular graph by rejection, or None if all tries failed.

    Draws a batch of uniform stub pairings (the configuration model) at once and
    returns the first one without loops and repeated edges. A pairing is simple with
    probability about exp((1 - d^2) / 4): the batch is sized from it, and skipped
    when it would probably fail (degree 5 and up).
    """
    if d == 0:
        return np.zeros((n, n), dtype=bool)
    p_simple = np.exp((1.0 - d * d) / 4.0)
    tries = min(64, int(np.ceil(4.0 / p_simple)), max(1, 2**15 // (n * d)))
    if tries * p_simple < 0.5:  # hopeless: leave it to the incremental pairing
        return None
    stubs = rng.permuted(np.tile(np.repeat(np.arange(n), d), (tries, 1)), axis=1)
    u, v = stubs[:, 0::2], stubs[:, 1::2]
    pair_key = np.sort(np.minimum(u, v) * n + np.maximum(u, v), axis=1)
    simple = ~(u == v).any(axis=1) & ~(pair_key[:, 1:] == pair_key[:, :-1]).any(axis=1)
    hits = np.flatnonzero(simple)
    if hits.size == 0:
        return None
    adj = np.zeros((n, n), dtype=bool)
    adj[u[hits[0]], v[hits[0]]] = True
    return adj | adj.T


def _stub_pairing(n: int, d: int, rng: np.random.Generator) -> np.ndarray | None:
    """One attempt at pairing d stubs per node into a simple graph.

    Incremental pairing in the manner of Steger and Wormald, done in batches: shuffle
    the free stubs, pair them two by two, keep every pair that is neither a loop nor
    an existing edge nor a repeat within the batch, and reshuffle the rest. Returns
    None when the free stubs admit no allowed pair (the caller starts over).
    """
    adj = np.zeros((n, n), dtype=bool)
    stubs = np.repeat(np.arange(n), d)
    while stubs.size:
        rng.shuffle(stubs)
        u, v = stubs[0::2], stubs[1::2]
        first = np.zeros(u.size, dtype=bool)
        pair_key = np.minimum(u, v) * n + np.maximum(u, v)
        first[np.unique(pair_key, return_index=True)[1]] = True
        keep = (u != v) & ~adj[u, v] & first
        if not keep.any():
            nodes = np.unique(stubs)
            blocked = adj[np.ix_(nodes, nodes)] | np.eye(nodes.size, dtype=bool)
            if blocked.all():
                return None
            continue
        adj[u[keep], v[keep]] = True
        adj[v[keep], u[keep]] = True
        stubs = np.concatenate([u[~keep], v[~keep]])
    return adj
