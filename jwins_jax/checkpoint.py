"""Checkpoints of a run, written with orbax-checkpoint (issue 11).

A checkpoint holds everything a run needs to continue exactly where it stopped:

* the simulator state (:class:`~jwins_jax.experiment.SimState`: models, optimizer
  state, the strategy's state, the PRNG key and the round counter), as arrays;
* as JSON metadata: the checkpoint format, the package version, the resolved config,
  the host counters of :class:`~jwins_jax.results.RunLog` (cumulative bytes per node,
  full shares, rounds done, the per-round statistics of rounds not evaluated yet) and
  where ``metrics.jsonl`` ended (lines, bytes, SHA-256): its size does not grow with
  the run.

Checkpoints live in ``RUN_DIR/checkpoints/<round>/``; orbax writes each one to a
temporary directory (``<round>.orbax-checkpoint-tmp``) and renames it when complete,
so a save that fails part-way (a full disk) or a run killed while saving leaves only
that temporary directory, which is never taken for a checkpoint. The last
:data:`KEEP` are kept.

A resumed run rebuilds its inputs (partition, graph) from the saved config, restores
the newest checkpoint that reads back whole (a damaged newer one is reported and
skipped), checks that ``metrics.jsonl`` still begins with what the checkpoint saw,
cuts it back to that and goes on: the rounds after the stop are exactly those of a
run that never stopped (the ``elapsed_s`` fields aside).
"""

from __future__ import annotations

import errno
import pathlib
import shutil
from typing import Any

import jax
import numpy as np

from jwins_jax.errors import ConfigError

FORMAT = 2
# format 1 saved every metrics record in each checkpoint (it grew with the run)
READABLE_FORMATS = (1, 2)
KEEP = 3
DIRNAME = "checkpoints"


def rounds(run_dir: str | pathlib.Path) -> list[int]:
    """The rounds of a run directory's complete checkpoints, oldest first.

    Reads only the directory names (orbax's layout: a complete checkpoint is a
    directory named by its round; one being written carries a temporary suffix), so
    it is cheap and needs no checkpoint library.
    """
    where = pathlib.Path(run_dir) / DIRNAME
    try:
        names = [p.name for p in where.iterdir() if p.is_dir()]
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


class _Damaged(Exception):
    """A checkpoint that does not read back whole."""


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
        """Writes a checkpoint at the state's round (replacing one of that round).

        Raises:
            OSError: the checkpoint could not be written (``filename``: its
                directory); the previous checkpoints are untouched.
        """
        import orbax.checkpoint as ocp

        from jwins_jax import __version__

        step = int(log_state["done"])
        meta = {
            "format": FORMAT,
            "version": __version__,
            "config": config_dict,
            "counters": _to_json(log_state["counters"]),
            "metrics": log_state["metrics"],
        }
        try:
            mgr = self._open(create=True)
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
        except Exception as err:
            raise _write_error(err, self.run_dir / DIRNAME / str(step)) from err

    def latest(self) -> int | None:
        """The round of the newest checkpoint, or None."""
        if not (self.run_dir / DIRNAME).is_dir():
            return None
        return self._open(create=False).latest_step()

    def restore(
        self, abstract_state: Any, config_dict: dict[str, Any]
    ) -> tuple[Any, dict]:
        """The newest checkpoint that reads back whole, checked against the config.

        A checkpoint that is damaged (unreadable metadata or arrays, other shapes) is
        skipped for the one before it; ``meta["skipped"]`` lists what was skipped
        and why.

        Raises:
            ConfigError: no checkpoint, none that reads back whole, or one written
                for another config or another version of the state.
        """
        if self.latest() is None:
            raise ConfigError(
                f"{str(self.run_dir)!r} has no checkpoint to resume from "
                f"(no {DIRNAME}/; runs save one on Ctrl-C, SIGTERM or --checkpoint-every)"
            )
        skipped: list[str] = []
        for step in sorted(self._open(create=False).all_steps(), reverse=True):
            try:
                state, meta = self._restore_step(step, abstract_state, config_dict)
            except _Damaged as err:
                skipped.append(str(err))
                continue
            meta["skipped"] = skipped
            return state, meta
        more = f" (and {len(skipped) - 1} older ones)" if len(skipped) > 1 else ""
        raise ConfigError(skipped[0] + more)

    def _restore_step(
        self, step: int, abstract_state: Any, config_dict: dict[str, Any]
    ) -> tuple[Any, dict]:
        import orbax.checkpoint as ocp

        mgr = self._open(create=False)
        where = str(self.run_dir / DIRNAME / str(step))
        try:
            meta = mgr.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )["meta"]
        except Exception as err:  # noqa: BLE001 - any failure: unreadable
            raise _Damaged(
                f"checkpoint {where!r} is corrupt or unreadable ({type(err).__name__})"
            ) from None
        if not isinstance(meta, dict):
            raise _Damaged(f"checkpoint {where!r} is corrupt (its metadata)")
        if meta.get("format") not in READABLE_FORMATS:
            raise ConfigError(
                f"checkpoint {where!r} has format {meta.get('format')!r}; this "
                f"version reads formats {', '.join(map(str, READABLE_FORMATS))}"
            )
        saved = meta.get("config")
        if saved != config_dict:
            diff = sorted(
                k
                for k in set(saved or {}) | set(config_dict)
                if (saved or {}).get(k) != config_dict.get(k)
            )
            raise ConfigError(
                f"checkpoint {where!r} was written for another config "
                f"(differs in {', '.join(diff[:5]) or 'its structure'}); it cannot resume "
                "this run"
            )
        try:
            state = mgr.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
            )["state"]
        except Exception as err:  # noqa: BLE001 - shapes, dtypes or missing files
            raise _Damaged(
                f"checkpoint {where!r} does not hold a state of this run's shapes or "
                f"is damaged ({type(err).__name__})"
            ) from None
        ok = jax.tree.map(
            lambda a, b: a.shape == b.shape and a.dtype == b.dtype,
            state,
            abstract_state,
        )
        if not all(jax.tree.leaves(ok)):
            raise _Damaged(f"checkpoint {where!r} holds a state of other shapes")
        meta["counters"] = _from_json(meta["counters"])
        meta["round"] = step
        return state, meta

    def discard_after(self, step: int | None) -> list[str]:
        """Removes what a resume from ``step`` replaces: complete checkpoints of later
        rounds (skipped as damaged) and the temporary directories of saves that
        never completed. Returns the names removed."""
        self.close()
        where = self.run_dir / DIRNAME
        removed = []
        try:
            entries = sorted(where.iterdir())
        except OSError:
            return removed
        for p in entries:
            later = p.name.isdigit() and (step is None or int(p.name) > step)
            if p.is_dir() and (later or ".orbax-checkpoint-tmp" in p.name):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed

    def close(self) -> None:
        if self._mgr is not None:
            self._mgr.close()
            self._mgr = None


def _write_error(err: BaseException, where: pathlib.Path) -> OSError:
    """A failed save as an OSError naming the checkpoint (ENOSPC when the disk is
    full, also when the array library reports it in its own words)."""
    if isinstance(err, OSError):
        if err.filename is None:
            err.filename = str(where)
        return err
    text = " ".join(str(err).split())
    full = "No space left on device" in text or "RESOURCE_EXHAUSTED" in text
    code = errno.ENOSPC if full else errno.EIO
    reason = (
        "No space left on device" if full else f"{type(err).__name__}: {text[:200]}"
    )
    return OSError(code, reason, str(where))
