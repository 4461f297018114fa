"""The benchmark suite of jwins_jax (``python -m benchmarks.run``; see run.py).

Read in this order: :mod:`.timing` (the suite's rows and load records around the
package's timer, :mod:`jwins_jax.kernelbench`), :mod:`.rounds` (the workloads and
the one round benchmark), :mod:`.baseline` (the per-node baselines, in processes of
their own), then a section (:mod:`.e2e`, :mod:`.kernels`, :mod:`.points`,
:mod:`.sweeps`, :mod:`.gpu`) and :mod:`.report` (the tables of RESULTS.md).
"""
