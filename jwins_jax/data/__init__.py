"""Training data: datasets, partitions over nodes and per-node minibatches (SPEC 2, 7).

The registry (:mod:`jwins_jax.data.registry`) declares every dataset once: its
loader, stand-in, supported partitions and the paper's run settings. The host loads
a dataset (``load_dataset``) and partitions its training ids over the nodes
(``partition``); ``node_data`` packs the partition into padded device arrays, from
which ``sample_batches`` draws each round's minibatch ids inside jit.
"""

from jwins_jax.data.batches import (
    NodeData,
    batches_per_pass,
    node_data,
    sample_batches,
    sample_pass,
)
from jwins_jax.data.dataset import Dataset
from jwins_jax.data.images import records_to_arrays
from jwins_jax.data.partition import (
    LABEL_PARTITIONS,
    NATURAL_RULES,
    PARTITIONS,
    dirichlet_min_samples,
    equal_sizes,
    local_test_parts,
    partition,
    user_nodes,
)
from jwins_jax.data.registry import (
    DATASET_FIELDS,
    DATASET_NAMES,
    DATASETS,
    STAND_INS,
    DatasetInfo,
    RunDefaults,
    dataset_info,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "DATASET_FIELDS",
    "DATASET_NAMES",
    "LABEL_PARTITIONS",
    "NATURAL_RULES",
    "PARTITIONS",
    "STAND_INS",
    "Dataset",
    "DatasetInfo",
    "NodeData",
    "RunDefaults",
    "batches_per_pass",
    "dataset_info",
    "dirichlet_min_samples",
    "equal_sizes",
    "load_dataset",
    "local_test_parts",
    "node_data",
    "partition",
    "records_to_arrays",
    "sample_batches",
    "sample_pass",
    "user_nodes",
]
