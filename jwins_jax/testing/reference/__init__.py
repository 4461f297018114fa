"""Independent per-node references of what the simulator computes.

Written the way the original system runs, one node at a time, and sharing no code with
the rest of ``jwins_jax`` (NumPy, PyWavelets and PyTorch only; importing this package
imports none of them):

* :mod:`.sharing_ref`: every sharing strategy of SPEC 4, node objects exchanging
  messages, with SPEC 5's byte accounting and the fault model;
* :mod:`.elias`: the Elias-gamma index coder of SPEC 5.3 (bytes, and back);
* :mod:`.models_np`: NumPy forward passes of the paper's models from flat vectors;
* :mod:`.layout`: a model described as plain data (layout, inputs, classes);
* :mod:`.torch_nodes`: the original's engine, per-node PyTorch models trained with
  ``torch.optim.SGD`` and evaluated with ``torch.inference_mode`` (needs PyTorch).

The tests import them to check the package; the benchmarks run them, in a process
without JAX, as the per-node baseline.
"""
