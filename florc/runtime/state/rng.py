"""The global random number generators: Python's, numpy's, torch's (CPU and CUDA).

Every snapshot carries their states, so a restored block draws the numbers the recording drew.
Generators the script holds itself (a `torch.Generator`, a `numpy.random.Generator`, a
`random.Random`) are captured as nodes of their own (kinds.py).
"""

from __future__ import annotations

import random
from typing import Any

from florc.runtime.state import lazy


def start_rng(with_torch: bool = False) -> dict[str, Any]:
    """RNG states before the script runs. numpy is imported first (when installed) because its
    global generator is seeded from the OS on first use: unseeded numpy randomness then differs
    between a recording and its replays unless its starting state is saved and restored. torch
    seeds its default generator from the OS when imported: with_torch (the script imports torch)
    imports it here, so that its first state is saved too."""
    for name in ("numpy", "torch") if with_torch else ("numpy",):
        try:
            __import__(name)
        except ImportError:
            pass
    return capture_rng()


def capture_rng() -> dict[str, Any]:
    """The states of the global generators of the libraries loaded now."""
    state: dict[str, Any] = {"python": random.getstate()}
    np = lazy.numpy()
    if np is not None:
        state["numpy"] = np.random.get_state()
    t = lazy.torch()
    if t is not None:
        state["torch"] = t.get_rng_state()
        if t.cuda.is_available() and t.cuda.is_initialized():
            state["cuda"] = t.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global generators to `state` (those it holds and that are loaded)."""
    if "python" in state:
        random.setstate(state["python"])
    np = lazy.numpy()
    if np is not None and "numpy" in state:
        np.random.set_state(state["numpy"])
    t = lazy.torch()
    if t is not None and "torch" in state:
        t.set_rng_state(state["torch"])
        if "cuda" in state and t.cuda.is_available():
            t.cuda.set_rng_state_all(state["cuda"])
