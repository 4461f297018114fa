"""A strategy defined outside the package: registration in code and by entry point,
its options in configs, flags, sweeps and --help, and runs with exact bytes.

The test strategy ``stride`` is composed from public blocks with three of its own:
a selection that sends every ``stride``-th coefficient (a static option), a value
codec that sends float16 values (2 bytes each, lossy) and a fill whose step towards
the neighbours' average is a traced option ``damping``. Its bytes per message are
known by hand: ``2 k`` value bytes and the Elias-gamma size of gaps of ``stride``.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from jwins_jax import cli, sharing
from jwins_jax.config import Config
from jwins_jax.errors import ConfigError
from jwins_jax.models import get_model
from jwins_jax.options import Option, int_range, unit_interval
from jwins_jax.sharing import OPTIONS, blocks
from jwins_jax.sharing.base import Cost

STRIDE = Option("send every STRIDE-th coefficient", int, int_range(1, 1000))
DAMPING = Option("step towards the average, in (0, 1]", float, unit_interval, True)
OWN_OPTIONS = {"stride": STRIDE, "damping": DAMPING}


def stride_sharing(n_params: int, stride: int = 3, damping: float = 1.0):
    tr = blocks.identity(n_params)
    index = jnp.arange(tr.m)

    def select(score, key, hp, inputs):
        mask = jnp.broadcast_to(index % stride == 0, score.shape)
        return mask, jnp.full(score.shape[:1], stride == 1)

    def encode(state, values, mask, key, hp):
        half = values.astype(jnp.float16).astype(values.dtype)
        return half, 2 * jnp.sum(mask, axis=1, dtype=jnp.int32), state

    plain = blocks.fill_with_own()

    def mix(table, own, received, mask, hp):
        return own + hp * (plain.mix(table, own, received, mask) - own)

    return blocks.compose(
        "stride",
        n_params,
        transform=tr,
        selection=blocks.Selection("stride", select, uses_score=False),
        values=blocks.ValueCodec("float16", encode),
        indices=blocks.elias_gamma(),
        fill=blocks.Fill(
            "damped",
            mix,
            Cost(per_value=4.0),
            ("damping",),
            lambda damping: jnp.float32(damping),
        ),
        params={"stride": stride, "damping": damping},
        options=OWN_OPTIONS,
    )


@pytest.fixture
def stride_registered():
    strategy = sharing.register("stride", stride_sharing, OWN_OPTIONS)
    yield strategy
    sharing.REGISTRY.pop("stride")


def _expected_bytes_per_message(n_params: int, stride: int) -> int:
    k = -(-n_params // stride)
    gap_bits = 2 * int(math.floor(math.log2(stride))) + 1
    return 2 * k + math.ceil((k - 1) * gap_bits / 8) + 16


# ------------------------------------------------------------------ registration
def test_register_refuses_collisions_and_bad_declarations(stride_registered):
    def factory(n_params, alpha=0.1, lr=0.1, gamma=0.5, stride=2, depth=9):
        return None

    def refused(match, *args, **kwargs):
        with pytest.raises(ConfigError, match=match):
            sharing.register(*args, **kwargs)

    refused("a built-in strategy", "jwins", factory, {})
    refused("the name is taken", "stride", factory, {})
    refused("use 1-40 lowercase", "Bad-Name", factory, {})
    refused("config field or command-line flag 'lr'", "x1", factory, {"lr": STRIDE})
    refused(
        "collides with the built-in option 'gamma'",
        "x2",
        factory,
        {"gamma": Option("another gamma", float)},
    )
    refused(
        "option 'stride' of strategy 'stride'",
        "x3",
        factory,
        {"stride": Option("another stride", int)},
    )
    refused("no default for option 'tau'", "x4", factory, {"tau": DAMPING})
    refused(
        "default of option 'depth' is not allowed",
        "x5",
        factory,
        {"depth": Option("deep", int, int_range(1, 4))},
    )
    refused(
        "config field or command-line flag 'batch'", "x6", factory, {"batch": STRIDE}
    )
    # reusing built-in options and the other strategy's options is allowed
    ok = sharing.register("x7", factory, {"alpha": OPTIONS["alpha"], "stride": STRIDE})
    try:
        assert ok.params == ("alpha", "stride") and ok.traced == ("alpha",)
        assert sharing.register("x7", factory, dict(ok.options)) is ok
    finally:
        sharing.REGISTRY.pop("x7")


def test_options_live_in_the_config_and_group_like_builtin_ones(stride_registered):
    c = Config.from_dict({"sharing": "stride", "damping": 0.5}).validate()
    assert c.sharing_options == (("damping", 0.5), ("stride", 3))  # default filled
    assert c.value("damping") == 0.5 and c.sharing_params() == {
        "stride": 3,
        "damping": 0.5,
    }
    assert "damping" in Config.traced_fields("stride")
    assert "stride" not in Config.traced_fields("stride")
    other_damping = c.updated({"damping": 0.9}).validate()
    other_stride = c.updated({"stride": 4}).validate()
    assert other_damping.static_key() == c.static_key()  # traced: one program
    assert other_stride.static_key() != c.static_key()  # static: another program
    # a strategy that does not use the option ignores it
    full = c.replace(sharing="full").validate()
    assert full.static_key() == full.updated({"stride": 9}).validate().static_key()
    saved = Config.from_dict(json.loads(json.dumps(c.to_dict()))).validate()
    assert saved == c
    with pytest.raises(ConfigError, match="damping=1.5 is not allowed"):
        Config.from_dict({"sharing": "stride", "damping": 1.5})
    with pytest.raises(ConfigError, match="not an option of a registered strategy"):
        Config(sharing_options={"nope": 1}).validate()
    with pytest.raises(ConfigError, match="unknown field 'nope'"):
        Config.from_dict({"nope": 1})


def test_help_lists_the_strategy_and_its_options(stride_registered, capsys):
    assert cli.main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--damping DAMPING step towards the average" in text
    assert "(default: stride: 1)" in text  # its default, by strategy
    assert "jwins, fft, choco, stride" in text  # --sharing's choices


def test_bad_values_give_one_line_and_status_2(stride_registered, tmp_path, capsys):
    out = tmp_path / "runs"
    for flags, what in (
        (["--sharing", "stride", "--damping", "0"], "damping=0.0 is not allowed"),
        (["--sharing", "stride", "--stride", "0"], "stride=0 is not allowed"),
        (["--sharing", "nosuch"], "sharing='nosuch' is unknown; allowed: full"),
    ):
        code = cli.main(["run", *flags, "--out-dir", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and what in err and err.count("\n") == 1, err
    assert not out.exists()


def test_run_compare_and_sweep_with_exact_bytes(stride_registered, tmp_path, capsys):
    base = [
        "--nodes", "8", "--topology", "ring", "--rounds", "4", "--eval-every", "2",
        "--local-steps", "1", "--test-subset", "32", "--quiet",
    ]  # fmt: skip
    n_params = get_model("digits_cnn").num_params
    per_message = _expected_bytes_per_message(n_params, 7)
    code = cli.main(
        ["run", "--sharing", "stride", "--stride", "7", "--damping", "0.5",
         "--out-dir", str(tmp_path / "a"), "--name", "r", *base]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    records = [
        json.loads(line)
        for line in (tmp_path / "a" / "r" / "metrics.jsonl").read_text().splitlines()
    ]
    for rec in records:  # every node of a ring sends 2 copies per round
        assert rec["bytes_per_node"] == rec["round"] * 2 * per_message
        assert rec["value_bytes_per_node"] == rec["round"] * 2 * 2 * (-(-n_params // 7))
    assert records[-1]["sim_time_s"]["mean"] > 0

    code = cli.main(
        ["compare", "--strategies", "stride", "--sharing-options", "stride=7",
         "--out-dir", str(tmp_path / "c"), "--name", "cmp", *base]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    comparison = json.loads((tmp_path / "c" / "cmp" / "comparison.json").read_text())
    assert comparison["stride"]["final"]["bytes_per_node"] == 4 * 2 * per_message
    assert comparison["stride"]["sharing_params"] == {"stride": 7, "damping": 1.0}

    spec = tmp_path / "spec.toml"
    spec.write_text(
        textwrap.dedent(
            f"""
            name = "own"
            one_program = true
            [base]
            sharing = "stride"
            stride = 5
            nodes = 8
            topology = "ring"
            rounds = 2
            eval_every = 2
            local_steps = 1
            test_subset = 32
            out_dir = "{tmp_path / "s"}"
            [grid]
            damping = [0.25, 1.0]
            """
        )
    )
    assert cli.main(["sweep", str(spec), "--quiet"]) == 0, capsys.readouterr().err
    rows = (tmp_path / "s" / "sweep-own" / "sweep.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "damping" in header and len(rows) == 3
    per_message5 = _expected_bytes_per_message(n_params, 5)
    for row in rows[1:]:
        cells = dict(zip(header, row.split(",")))
        assert cells["status"] == "finished"
        assert float(cells["bytes_per_node"]) == 2 * 2 * per_message5


def test_entry_points_are_read_once_and_broken_ones_are_reported(tmp_path):
    site = tmp_path / "site"
    (site / "ep_stride").mkdir(parents=True)
    (site / "ep_stride" / "__init__.py").write_text(
        "from jwins_jax.sharing import Strategy\n"
        "from tests.test_extension import OWN_OPTIONS, stride_sharing\n"
        "STRATEGY = Strategy('epstride', stride_sharing, OWN_OPTIONS)\n"
        "NOT_A_STRATEGY = 3\n"
    )
    info = site / "ep_stride-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-stride\n")
    (info / "entry_points.txt").write_text(
        "[jwins_jax.sharing]\n"
        "epstride = ep_stride:STRATEGY\n"
        "epbroken = ep_stride:NOT_A_STRATEGY\n"
    )
    sys.path.insert(0, str(site))
    try:
        sharing._entry_points_read = False
        with pytest.warns(UserWarning, match="epbroken"):
            names = sharing.strategies()
        assert "epstride" in names and "epbroken" not in names
        assert sharing.get("epstride").source.startswith("entry point epstride")
        with pytest.raises(ConfigError, match="installed but failed to load"):
            sharing.get("epbroken")
        sharing.REGISTRY.pop("epstride")
        sharing.strategies()  # read once: not registered again
        assert "epstride" not in sharing.REGISTRY
    finally:
        sys.path.remove(str(site))
        sharing.REGISTRY.pop("epstride", None)
        sharing.ENTRY_POINT_ERRORS.pop("epbroken", None)


def test_custom_blocks_compose_with_their_traced_option(stride_registered):
    sh = sharing.make_sharing("stride", 40, stride=4, damping=0.5)
    assert sh.traced == ("damping",) and set(sh.hp) == {"fill"}
    assert sh.blocks.values.name == "float16" and sh.info["coefficients"] == 40
    assert sh.cost == Cost(per_value=4.0)
    with pytest.raises(ValueError, match="read by no block"):
        blocks.compose(
            "x",
            40,
            transform=blocks.identity(40),
            selection=blocks.bernoulli(blocks.fixed_alpha(40, cap=None)),
            indices=blocks.seed(),
            params={"alpha": 0.1, "damping": 0.5},
            options=OWN_OPTIONS,
        )
    x = jnp.asarray(np.random.default_rng(0).standard_normal((6, 40)), jnp.float32)
    assert sh.init(x) == blocks.PipelineState(score=(), values=())


def test_reserved_names_are_the_flags_that_are_not_settings():
    """A registered option becomes a flag of run, compare and sweep: the names their
    other flags take are refused at registration (sharing.RESERVED_NAMES)."""
    parser = cli.build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    own = set()
    for command in ("run", "compare", "sweep"):
        for action in subparsers.choices[command]._actions:
            if not Config.is_setting(action.dest):
                own.add(action.dest)
    assert own <= sharing.RESERVED_NAMES, own - sharing.RESERVED_NAMES
