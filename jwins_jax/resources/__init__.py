"""Data files the package needs at run time, installed with it.

* ``96_regular.edges``: the paper's 96-node communication graph (SPEC 6.3, Appendix A:
  190 edges; nodes 15, 16, 42 and 43 have degree 3, the others 4), the default of
  ``topology = "edges"``;
* ``16_regular.edges``: a 16-node 3-regular graph for small runs and tests.

Both are ``.edges`` files (SPEC 6.1). They are found through :mod:`importlib.resources`,
so they work wherever the package is installed (a checkout, a wheel, Colab).
"""

from __future__ import annotations

import importlib.resources
import pathlib

PAPER_GRAPH_NAME = "96_regular.edges"
SMALL_GRAPH_NAME = "16_regular.edges"


def path(name: str) -> pathlib.Path:
    """The file system path of the resource file ``name``.

    Args:
        name: a file name in this directory, e.g. ``"96_regular.edges"``.

    Returns:
        Its path inside the installed package (a checkout, an editable install or
        an unpacked wheel all keep the package's files on the file system).
    """
    return pathlib.Path(str(importlib.resources.files(__name__).joinpath(name)))
