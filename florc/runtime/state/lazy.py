"""torch and numpy as the script has them: imported by the script or not at all.

The state code never imports either itself (a script without them still works, and importing
torch costs seconds); it looks them up in `sys.modules`, where the script's import put them.
"""

from __future__ import annotations

import sys
from typing import Any


def torch() -> Any:
    """The torch module, if the script imported it; else None."""
    return sys.modules.get("torch")


def numpy() -> Any:
    """The numpy module, if anything imported it; else None."""
    return sys.modules.get("numpy")


def is_tensor(obj: Any) -> bool:
    t = torch()
    return t is not None and isinstance(obj, t.Tensor)


def is_module(obj: Any) -> bool:
    t = torch()
    return t is not None and isinstance(obj, t.nn.Module)


def is_optimizer(obj: Any) -> bool:
    t = torch()
    return t is not None and isinstance(obj, t.optim.Optimizer)


def is_dataloader(obj: Any) -> bool:
    t = torch()
    return t is not None and isinstance(obj, t.utils.data.DataLoader)


def is_ndarray(obj: Any) -> bool:
    np = numpy()
    return np is not None and isinstance(obj, np.ndarray)
