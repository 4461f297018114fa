"""Checkpoints of a run, written with orbax-checkpoint (issue 11).

A checkpoint holds everything a run needs to continue exactly where it stopped:

* the simulator state (:class:`~jwins_jax.experiment.SimState`: models, optimizer
  state, the strategy's state, the PRNG key and the round counter), as arrays;
* as JSON metadata: the checkpoint format, the package version, the resolved config,
  the host counters of :class:`~jwins_jax.results.RunLog` (cumulative bytes per node,
  full shares, rounds done, the per-round statistics of rounds not evaluated yet) and
  the metrics records written so far.

Checkpoints live in ``RUN_DIR/checkpoints/<round>/``; orbax writes each one to a
temporary directory and renames it when complete, so a run killed while saving keeps
its previous checkpoint. The last :data:`KEEP` are kept.

A resumed run rebuilds its inputs (partition, graph) from the saved config, restores
the state and the counters, rewrites ``metrics.jsonl`` from the saved records and goes
on: the rounds after the stop are exactly those of a run that never stopped (the
``elapsed_s`` fields aside).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np

from jwins_jax.errors import ConfigError

FORMAT = 1
KEEP = 3
DIRNAME = "checkpoints"


def _manager(run_dir: pathlib.Path, create: bool):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=KEEP, enable_async_checkpointing=False, create=create
    )
    return ocp.CheckpointManager(
        pathlib.Path(run_dir).resolve() / DIRNAME, options=options
    )


def _to_json(counters: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in counters.items():
        if key == "pending":
            out[key] = [
                {
                    k: {
                        "dtype": str(np.asarray(v).dtype),
                        "data": np.asarray(v).tolist(),
                    }
                    for k, v in seg.items()
                }
                for seg in value
            ]
        elif isinstance(value, np.ndarray):
            out[key] = value.tolist()
        else:
            out[key] = value
    return out


def _from_json(counters: dict[str, Any]) -> dict[str, Any]:
    out = dict(counters)
    for key in ("value_cum", "meta_cum", "full_count"):
        out[key] = np.asarray(counters[key], np.int64)
    out["pending"] = [
        {k: np.asarray(v["data"], dtype=v["dtype"]) for k, v in seg.items()}
        for seg in counters.get("pending", [])
    ]
    return out


class Checkpointer:
    """Saves and restores the checkpoints of one run directory."""

    def __init__(self, run_dir: pathlib.Path):
        self.run_dir = pathlib.Path(run_dir)
        self._mgr = None

    def _open(self, create: bool):
        if self._mgr is None:
            self._mgr = _manager(self.run_dir, create)
        return self._mgr

    def save(
        self, state: Any, config_dict: dict[str, Any], log_state: dict[str, Any]
    ) -> None:
        """Writes a checkpoint at the state's round (replacing one of that round)."""
        import orbax.checkpoint as ocp

        from jwins_jax import __version__

        mgr = self._open(create=True)
        step = int(log_state["done"])
        meta = {
            "format": FORMAT,
            "version": __version__,
            "config": config_dict,
            "counters": _to_json(log_state["counters"]),
            "records": log_state["records"],
        }
        if step in mgr.all_steps():
            mgr.delete(step)
        mgr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        mgr.wait_until_finished()

    def latest(self) -> int | None:
        """The round of the newest checkpoint, or None."""
        if not (self.run_dir / DIRNAME).is_dir():
            return None
        return self._open(create=False).latest_step()

    def restore(
        self, abstract_state: Any, config_dict: dict[str, Any]
    ) -> tuple[Any, dict]:
        """The newest checkpoint's state and metadata, checked against the config.

        Raises:
            ConfigError: no checkpoint, a corrupt one, or one written for another
                config or another version of the state.
        """
        import orbax.checkpoint as ocp

        where = self.run_dir / DIRNAME
        step = self.latest()
        if step is None:
            raise ConfigError(
                f"{str(self.run_dir)!r} has no checkpoint to resume from "
                f"(no {DIRNAME}/; runs save one on Ctrl-C, SIGTERM or --checkpoint-every)"
            )
        mgr = self._open(create=False)
        try:
            meta = mgr.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )["meta"]
        except Exception as err:  # noqa: BLE001 - any failure: unreadable
            raise ConfigError(
                f"checkpoint {str(where / str(step))!r} is corrupt or unreadable "
                f"({type(err).__name__})"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ConfigError(
                f"checkpoint {str(where / str(step))!r} has format "
                f"{meta.get('format') if isinstance(meta, dict) else None!r}; this version "
                f"reads format {FORMAT}"
            )
        saved = meta.get("config")
        if saved != config_dict:
            diff = sorted(
                k
                for k in set(saved or {}) | set(config_dict)
                if (saved or {}).get(k) != config_dict.get(k)
            )
            raise ConfigError(
                f"checkpoint {str(where / str(step))!r} was written for another config "
                f"(differs in {', '.join(diff[:5]) or 'its structure'}); it cannot resume "
                "this run"
            )
        try:
            state = mgr.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
            )["state"]
        except Exception as err:  # noqa: BLE001 - shapes, dtypes or missing files
            raise ConfigError(
                f"checkpoint {str(where / str(step))!r} does not hold a state of this "
                f"run's shapes or is damaged ({type(err).__name__})"
            ) from None
        ok = jax.tree.map(
            lambda a, b: a.shape == b.shape and a.dtype == b.dtype,
            state,
            abstract_state,
        )
        if not all(jax.tree.leaves(ok)):
            raise ConfigError(
                f"checkpoint {str(where / str(step))!r} holds a state of other shapes"
            )
        meta["counters"] = _from_json(meta["counters"])
        meta["round"] = step
        return state, meta

    def close(self) -> None:
        if self._mgr is not None:
            self._mgr.close()
            self._mgr = None
