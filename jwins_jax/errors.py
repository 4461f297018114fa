"""Errors the command line turns into one-line messages with exit status 2."""


class ConfigError(ValueError):
    """Bad user input: a config field, flag or file.

    The message is one line naming what is wrong and what is allowed, e.g.
    ``"rounds=0 is not allowed: rounds must be a positive integer"``.
    """


class DivergenceError(RuntimeError):
    """A node's model became NaN or infinite during a run."""
