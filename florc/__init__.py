"""florc: hindsight logging for model training.

Record an unmodified training script once; later add log statements and
replay only what they need, restoring everything else from checkpoints.
"""

from __future__ import annotations

from florc._version import __version__
from florc.runtime.api import log
from florc.store.queries import dataframe

__all__ = ["__version__", "dataframe", "log"]
