"""Errors the command line turns into one-line messages and exit statuses."""


class ConfigError(ValueError):
    """Bad user input: a config field, flag or file (exit status 2).

    The message is one line naming what is wrong and what is allowed, e.g.
    ``"rounds=0 is not allowed: rounds must be a positive integer"``.
    """


class DivergenceError(RuntimeError):
    """A node's model became NaN or infinite during a run (exit status 1)."""


class Terminated(Exception):
    """The process was asked to stop (SIGTERM); the run ends as ``interrupted``."""


class RunFailed(RuntimeError):
    """A started run (or sweep) stopped on an error (exit status 1).

    The message is one line: what happened (e.g. the disk is full, and which file),
    where the last good state is (the last checkpoint and how to resume) and whether
    summary.json could record it.
    """
