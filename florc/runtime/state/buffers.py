"""Host buffers for checkpoint copies, reused from one checkpoint to the next.

A fresh buffer for every copy costs more than the copy: the allocator maps new pages for large
blocks and the first write to each page faults, so a cold `clone()` runs at a fraction of memcpy
speed. The copies of one checkpoint are the same sizes as the previous one's, so once the writer
is done with a snapshot its buffers come back here and the next checkpoint copies into warm
memory. Pinned buffers (for copies from a GPU, which only pinned memory receives asynchronously)
are pooled apart from pageable ones.

`max_bytes` bounds what is kept while unused; the buffers of checkpoints in flight are not
counted (the writer's queue bounds those).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from florc.runtime.state import lazy

DEFAULT_MAX_BYTES = 1024 * 2**20


class HostBuffers:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._free: dict[tuple[int, bool], list[Any]] = defaultdict(list)
        self._free_bytes = 0
        self._lock = threading.Lock()
        self.reused = 0  # buffers handed out again
        self.allocated = 0

    def like(self, t: Any, pinned: bool = False) -> tuple[Any, Any]:
        """(a contiguous CPU tensor shaped like `t` to copy it into, the buffer to give back)."""
        torch = lazy.torch()
        nbytes = t.nelement() * t.element_size()
        with self._lock:
            free = self._free.get((nbytes, pinned))
            buf = free.pop() if free else None
            if buf is not None:
                self._free_bytes -= nbytes
                self.reused += 1
        if buf is None:
            buf = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
            self.allocated += 1
        return buf.view(t.dtype).view(t.shape), buf

    def give_back(self, buffers: list[tuple[Any, bool]]) -> None:
        """The snapshot holding these (buffer, pinned) is written: they may be reused."""
        with self._lock:
            for buf, pinned in buffers:
                nbytes = buf.nelement()
                if self._free_bytes + nbytes > self.max_bytes:
                    continue  # let it go
                self._free[(nbytes, pinned)].append(buf)
                self._free_bytes += nbytes
