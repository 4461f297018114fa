"""Ready for accelerators without one: every program the command line compiles lowers
for CUDA and TPU (``jax.export``: no CPU-only custom calls, no host callbacks), and no
CPU-only setting is applied when the backend is not the CPU.

Lowering only, no compilation: small shapes, abstract arguments.
"""

import jax
import numpy as np
import pytest

from jwins_jax import compiler, devices, experiment, hostmem, platform, tasks
from jwins_jax.config import Config
from jwins_jax.data.batches import NodeData
from jwins_jax.models import MODELS, get_model
from jwins_jax.sharing import STRATEGIES, make_sharing
from jwins_jax.topology import NeighborTable

PLATFORMS = ("cuda", "tpu")
CALLBACKS = ("callback", "xla_python", "host_compute")


def _abstract(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)


def _export(fn, *args) -> str:
    exported = jax.export.export(jax.jit(fn), platforms=PLATFORMS)(*args)
    assert exported.platforms == PLATFORMS
    text = exported.mlir_module()
    for word in CALLBACKS:
        assert word not in text, f"{word} in the exported program"
    return text


@pytest.fixture(scope="module")
def digits():
    from jwins_jax.data import load_dataset

    return load_dataset("digits")


def _built(digits, **changes):
    fields = {
        "nodes": 4,
        "topology": "ring",
        "rounds": 2,
        "eval_every": 2,
        "local_steps": 1,
        "batch_size": 4,
        "test_subset": 16,
    }
    c = Config(**{**fields, **changes}).validate()
    exp = experiment.build_experiment(c, digits)
    return exp, experiment.build_inputs(c, digits), experiment.hparams(exp, c)


def _block_args(exp, inputs, hp, batch=None):
    key = jax.ShapeDtypeStruct((2,) if batch is None else (batch, 2), np.uint32)
    init = exp.init if batch is None else jax.vmap(exp.init)
    state = jax.eval_shape(init, key, _abstract(hp))
    return state, _abstract(hp), _abstract(inputs), np.int32(1)


WORLDS = {
    "static": {},
    "faults_dynamic": {
        "topology": "regular",
        "degree": 2,
        "dynamic": True,
        "link_failure": 0.1,
        "churn": 0.1,
    },
}


@pytest.mark.parametrize("world", sorted(WORLDS))
@pytest.mark.parametrize("sharing", STRATEGIES)
def test_block_of_every_strategy_lowers_for_accelerators(digits, sharing, world):
    extra = {"level": 2} if sharing in ("wavelet", "jwins") else {}
    exp, inputs, hp = _built(digits, sharing=sharing, **WORLDS[world], **extra)
    text = _export(exp.block, *_block_args(exp, inputs, hp))
    assert "while" in text  # the rounds' loop is in the program, not on the host


def test_sweep_batch_and_sampled_evaluation_lower_for_accelerators(digits):
    exp, inputs, hp = _built(digits, sharing="jwins", level=2, eval_nodes=2)
    stacked = experiment.stack_inputs([inputs, inputs])
    hps = experiment.stack_hparams([hp, hp])
    axes = experiment.inputs_axes(stacked)
    block = jax.vmap(exp.block, in_axes=(0, 0, axes, None))
    _export(block, *_block_args(exp, stacked, hps, batch=2))


@pytest.mark.parametrize("name", MODELS)
def test_evaluation_of_every_model_lowers_for_accelerators(name):
    """The evaluation program of every model, on the global test split (and on local
    test sets for the rating model), from abstract inputs of the model's shapes."""
    model = get_model(name)
    n, samples = 2, 4
    task = tasks.TASKS["rating" if model.num_classes == 0 else "classification"]
    config = Config(nodes=n, model=name, eval_nodes=1).validate()
    exp = experiment.Experiment(
        config=config,
        model=model,
        task=task,
        sharing=make_sharing("full", model.num_params),
    )
    x = jax.ShapeDtypeStruct((samples, *model.input_shape), np.dtype(model.input_dtype))
    y = jax.ShapeDtypeStruct(
        (samples,), np.float32 if task.name == "rating" else np.int32
    )
    ids = NodeData(
        index=jax.ShapeDtypeStruct((n, 3), np.int32),
        size=jax.ShapeDtypeStruct((n,), np.int32),
    )
    table = NeighborTable(
        idx=jax.ShapeDtypeStruct((n, 1), np.int32),
        weight=jax.ShapeDtypeStruct((n, 1), np.float32),
        self_weight=jax.ShapeDtypeStruct((n,), np.float32),
        degree=jax.ShapeDtypeStruct((n,), np.int32),
    )
    inputs = experiment.Inputs(
        train_x=x,
        train_y=y,
        test_x=x,
        test_y=y,
        nodes=ids,
        tests=ids if task.name == "rating" else None,
        graph=table,
    )
    state = experiment.SimState(
        x=jax.ShapeDtypeStruct((n, model.num_params), np.float32),
        opt=None,
        share=None,
        key=jax.ShapeDtypeStruct((2,), np.uint32),
        round=jax.ShapeDtypeStruct((), np.int32),
        clock=jax.ShapeDtypeStruct((n,), np.float32),
    )
    _export(exp.evaluate, state, inputs)


# ------------------------------------------------------ no CPU settings elsewhere
@pytest.fixture
def gpu_backend(monkeypatch):
    """JAX reports a GPU as its default backend (nothing is started)."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    compiler.compiler_options.cache_clear()
    yield
    compiler.compiler_options.cache_clear()


def test_no_cpu_compile_options_off_the_cpu(gpu_backend):
    assert compiler.compiler_options() == {}
    assert isinstance(compiler.jit(lambda v: v + 1), type(jax.jit(lambda v: v)))


def test_no_allocator_tuning_for_an_accelerator(gpu_backend, monkeypatch):
    monkeypatch.setattr(hostmem, "_done", False)

    def no_libc(*args, **kwargs):
        raise AssertionError("glibc was tuned for an accelerator run")

    monkeypatch.setattr(hostmem.ctypes, "CDLL", no_libc)
    assert hostmem.tune_host_allocator() is False
    assert hostmem._done is False


def test_backend_defaults_follow_the_accelerator(gpu_backend):
    assert platform.backend() == "gpu"
    assert platform.default("train_chunk") == platform.DEFAULTS["gpu"]["train_chunk"]
    assert platform.default("eval_chunk") == platform.DEFAULTS["gpu"]["eval_chunk"]


@pytest.mark.parametrize("platforms, gloo", [("cuda", False), ("cpu", True)])
def test_gloo_collectives_only_for_cpu_processes(monkeypatch, platforms, gloo):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    monkeypatch.delenv("JAX_CPU_COLLECTIVES_IMPLEMENTATION", raising=False)
    updates, joined = {}, []
    monkeypatch.setattr(jax.config, "update", lambda k, v: updates.__setitem__(k, v))
    monkeypatch.setattr(
        jax.distributed, "initialize", lambda **kw: joined.append(kw) or None
    )
    monkeypatch.setattr(devices, "_joined", False)
    devices.initialize("127.0.0.1:1234", 2, 1)
    assert joined == [
        {"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 1}
    ]
    assert ("jax_cpu_collectives_implementation" in updates) is gloo
    if gloo:
        assert updates["jax_cpu_collectives_implementation"] == "gloo"
