"""Sources of nondeterminism florc can see in the code, reported before training starts.

Replay reproduces a run only if training is deterministic given the restored state. These
patterns make it not so (or make checkpoints miss state), and are cheap to spot:

- `DataLoader(..., persistent_workers=True)`: worker processes keep their own RNG state across
  epochs, which no checkpoint of this process holds;
- `torch.backends.cudnn.benchmark = True`: cuDNN picks algorithms by timing them, so results
  can differ from run to run;
- `os.urandom`, `secrets`, `random.SystemRandom`, `uuid.uuid4`: randomness no seed controls.
"""

from __future__ import annotations

import libcst as cst

from florc.transforms.modules import ModuleInfo
from florc.transforms.syntax import dotted, source_walk

UNSEEDED = {
    ("os", "urandom"): "`os.urandom()` is randomness no seed controls",
    ("random", "SystemRandom"): "`random.SystemRandom` is randomness no seed controls",
    ("uuid", "uuid4"): "`uuid.uuid4()` is randomness no seed controls",
    ("secrets",): "the `secrets` module is randomness no seed controls",
}

# Examples (tests/unit/test_rules.py): each snippet's last line gets exactly one warning, or none.
EXAMPLES_WARN = [
    "import os\nsalt = os.urandom(8)",
    "from os import urandom\nsalt = urandom(8)",
    "import uuid\nrun_id = uuid.uuid4()",
    "import secrets\ntoken = secrets.token_hex(8)",
    "import random\nrng = random.SystemRandom()",
    "loader = DataLoader(data, batch_size=32, num_workers=2, persistent_workers=True)",
    "import torch\ntorch.backends.cudnn.benchmark = True",
]
EXAMPLES_NO_WARN = [
    "import random\nrandom.seed(0)\nx = random.random()",  # seeded: replay restores it
    "import uuid\nrun_id = uuid.uuid5(uuid.NAMESPACE_URL, 'run')",  # derived from its input
    "import time\nt0 = time.time()",  # clocks: left out of the comparison, not warned about
    "loader = DataLoader(data, batch_size=32, persistent_workers=False)",
    "import torch\ntorch.backends.cudnn.benchmark = False",
    "def urandom(n):\n    return bytes(n)\nsalt = urandom(8)",  # not os.urandom
]

# Reads of a clock: a replay computes other values from them than the recording did (elapsed
# times, steps per second). Not warned about; fidelity leaves the values they feed out.
CLOCKS = frozenset(
    {
        ("time", "time"),
        ("time", "time_ns"),
        ("time", "perf_counter"),
        ("time", "perf_counter_ns"),
        ("time", "monotonic"),
        ("time", "monotonic_ns"),
        ("time", "process_time"),
        ("time", "process_time_ns"),
        ("time", "thread_time"),
        ("time", "thread_time_ns"),
        ("time", "clock_gettime"),
        ("time", "clock_gettime_ns"),
        ("time", "localtime"),
        ("time", "gmtime"),
        ("time", "ctime"),
        ("time", "asctime"),
        ("time", "strftime"),
        ("datetime", "datetime", "now"),
        ("datetime", "datetime", "utcnow"),
        ("datetime", "datetime", "today"),
        ("datetime", "date", "today"),
        ("timeit", "default_timer"),
    }
)
# methods that read a clock whatever their receiver (torch.cuda.Event.elapsed_time)
CLOCK_METHODS = frozenset({"elapsed_time"})


def source_kind(info: ModuleInfo, chain: tuple[str, ...]) -> str | None:
    """What a dotted name is: a clock read ("clock"), unseeded randomness ("random") or
    neither (None)."""
    resolved = _resolve(info, chain)
    if resolved in CLOCKS:
        return "clock"
    if any(resolved[: len(prefix)] == prefix for prefix in (*UNSEEDED, ("uuid", "uuid1"))):
        return "random"
    return None


def find_nondeterminism(info: ModuleInfo) -> list[str]:
    """Warnings as "relpath:line:col: what; what to do"."""
    found: list[tuple[cst.CSTNode, str]] = []

    class Finder:
        def visit_Call(self, node: cst.Call) -> None:
            for arg in node.args:
                if (
                    arg.keyword is not None
                    and arg.keyword.value == "persistent_workers"
                    and isinstance(arg.value, cst.Name)
                    and arg.value.value == "True"
                ):
                    found.append(
                        (
                            arg,
                            "`persistent_workers=True` keeps DataLoader worker state across "
                            "epochs that checkpoints cannot hold; replayed epochs may differ "
                            "(drop it, or replay from the start)",
                        )
                    )
            chain = dotted(node.func)
            if chain is None:
                return
            resolved = _resolve(info, chain)
            for prefix, why in UNSEEDED.items():
                if resolved[: len(prefix)] == prefix:
                    found.append((node, f"{why}; replayed values will differ from the recording"))

        def visit_Assign(self, node: cst.Assign) -> None:
            for t in node.targets:
                chain = dotted(t.target)
                if (
                    chain is not None
                    and chain[-2:] == ("cudnn", "benchmark")
                    and isinstance(node.value, cst.Name)
                    and node.value.value == "True"
                ):
                    found.append(
                        (
                            node,
                            "`cudnn.benchmark = True` picks algorithms by timing them, so "
                            "results can differ between runs; record with --deterministic",
                        )
                    )

    finder = Finder()
    source_walk(info.tree, {"Call": finder.visit_Call, "Assign": finder.visit_Assign})
    out = []
    for node, why in found:
        line, col = info.position(node)
        out.append(f"{info.relpath}:{line}:{col}: {why}")
    return out


def _resolve(info: ModuleInfo, chain: tuple[str, ...]) -> tuple[str, ...]:
    """`urandom` imported from os -> ("os", "urandom"); `np.x` stays as written."""
    target = info.imports.get(chain[0])
    if target is None:
        return chain
    module, _, attr = target.partition(":")
    head = tuple(module.split(".")) + ((attr,) if attr else ())
    return head + chain[1:]
