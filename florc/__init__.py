"""florc: hindsight logging for model training.

Record an unmodified training script once; later add log statements and
replay only what they need, restoring everything else from checkpoints.

A script may also say itself what florc checkpoints: `florc.loop(name, iterable)` marks its
main loop (and counts steps in the loops inside it), `florc.checkpoint(**objects)` names the
state that loop checkpoints and restores, `florc.log(name, value)` logs a value. Without
`florc record` or `florc replay` they do nothing.
"""

from __future__ import annotations

from florc._version import __version__
from florc.runtime.api import checkpoint, log, loop
from florc.store.queries import dataframe

__all__ = ["__version__", "checkpoint", "dataframe", "log", "loop"]
