"""florc: hindsight logging for model training.

Record an unmodified training script once; later add log statements and
replay only what they need, restoring everything else from checkpoints.
"""

from __future__ import annotations

__version__ = "0.1.0"

from florc.runtime.api import log
from florc.runtime.results import dataframe

__all__ = ["__version__", "dataframe", "log"]
