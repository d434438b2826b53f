"""What the node kinds need to know about live objects: where a Python object keeps its state,
whether a class can be found again by name, whether an autograd graph is still alive.

An object is captured attribute by attribute only when all of its state is in its Python
attributes (`object_state`); one with C fields, a `__reduce__` of its own or an iterator's
position is copied whole instead (a `copy` node), and restoring it rebinds the name.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import types
from typing import Any

from florc.runtime.state import lazy

_HEAPTYPE = 1 << 9
_ATTRIBUTE_BASES = (object, types.SimpleNamespace)
_MODULE_BOOKKEEPING: frozenset[str] | None = None


def module_attributes(module: Any) -> dict[str, Any]:
    """A module's own plain attributes: its __dict__ less torch's bookkeeping (parameters,
    buffers, submodules, hooks, the training flag). torch's own module classes keep nothing
    there that training changes (their state is in parameters and buffers), so they have none."""
    global _MODULE_BOOKKEEPING
    cls = type(module)
    if cls.__module__.startswith("torch.") or cls.__module__ == "torch":
        return {}
    if _MODULE_BOOKKEEPING is None:
        fresh = lazy.torch().nn.Module()
        _MODULE_BOOKKEEPING = frozenset(vars(fresh)) | {"_compiled_call_impl"}
    state = vars(module)
    if leaves_out(module):
        state = module.__getstate__()
        if not isinstance(state, dict):
            return {}
    return {k: v for k, v in state.items() if k not in _MODULE_BOOKKEEPING}


def leaves_out(module: Any) -> bool:
    """The module's class has a __getstate__ of its own: what it leaves out is not captured,
    and restoring keeps the live values of those attributes."""
    return type(module).__getstate__ is not lazy.torch().nn.Module.__getstate__


def tuple_fields(obj: Any) -> tuple[str, ...] | None:
    """The field names of a namedtuple or structseq; None for anything else."""
    if not isinstance(obj, tuple) or type(obj) is tuple:
        return None
    cls = type(obj)
    fields = getattr(cls, "_fields", None)
    if isinstance(fields, tuple) and hasattr(cls, "_make"):
        return fields
    n = getattr(cls, "n_fields", None)
    if isinstance(n, int) and n == len(obj):
        return tuple(cls.__match_args__) if hasattr(cls, "__match_args__") else ()
    return None


def object_state(obj: Any) -> tuple[dict[str, Any], tuple[str, ...], bool] | None:
    """An object whose state lives in its Python attributes, as (attributes, the names among
    them set with object.__setattr__ rather than through __dict__ (slots), partial). partial:
    its class's __getstate__ leaves some attributes out; restoring keeps their live values.
    None: the object keeps state florc cannot see (C fields, its own __reduce__, an iterator)."""
    cls = type(obj)
    if not _python_class(cls) or not _plain_class(obj):
        return None
    if dataclasses.is_dataclass(obj):
        attrs = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
        extra = tuple(f.name for f in dataclasses.fields(obj) if f.name not in attrs)
        for name in extra:
            attrs[name] = getattr(obj, name)
        return attrs, extra, False
    if _overrides(cls, "__reduce_ex__") or _overrides(cls, "__reduce__"):
        return None
    if _overrides(cls, "__deepcopy__"):
        return None
    slots = _slot_names(cls)
    if _overrides(cls, "__getstate__"):
        if slots or not hasattr(obj, "__dict__"):
            return None
        state = obj.__getstate__()
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            return None
        return dict(state), (), True
    if not hasattr(obj, "__dict__") and not slots:
        return None
    attrs = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    present = []
    for name in slots:
        try:
            attrs[name] = getattr(obj, name)
            present.append(name)
        except AttributeError:
            pass  # an unset slot
    return attrs, tuple(present), False


def attributes_of(obj: Any, setattr_names: tuple[str, ...]) -> dict[str, Any]:
    """An object's attributes now: its __dict__ and the named slots that are set."""
    attrs = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    for name in setattr_names:
        try:
            attrs[name] = getattr(obj, name)
        except AttributeError:
            pass
    return attrs


def _python_class(cls: type) -> bool:
    """Defined in Python (every class in its MRO but object): no state hidden in C fields."""
    for c in cls.__mro__:
        if c in _ATTRIBUTE_BASES:  # SimpleNamespace: its state is all in its __dict__
            continue
        if not c.__flags__ & _HEAPTYPE:
            return False
        new = c.__dict__.get("__new__")
        if new is not None and not isinstance(new, (staticmethod, types.FunctionType)):
            return False  # allocated by C code: it has fields of its own
    return True


def _overrides(cls: type, name: str) -> bool:
    """A class of the MRO (not object, not SimpleNamespace) defines `name` itself."""
    return any(name in c.__dict__ for c in cls.__mro__ if c not in _ATTRIBUTE_BASES)


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for c in cls.__mro__:
        slots = c.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for s in slots:
            if s in ("__dict__", "__weakref__"):
                continue
            names.append(f"_{c.__name__.lstrip('_')}{s}" if s.startswith("__") else s)
    return names


def _plain_class(obj: Any) -> bool:
    """User-level classes whose state lives in __dict__ (not C extensions, iterators, files)."""
    if isinstance(obj, (io.IOBase, types.GeneratorType)):
        return False
    try:
        return iter(obj) is not obj
    except TypeError:
        return True


def same_class(current: type, recorded: Any) -> bool:
    """The recorded class, or the same class defined again: a class that can only be pickled
    by value (a local class, say) comes back from a checkpoint as a new class object."""
    if current is recorded:
        return True
    if not isinstance(recorded, type) or importable(recorded):
        return False
    return (
        current.__qualname__ == recorded.__qualname__ and current.__module__ == recorded.__module__
    )


def importable(obj: Any) -> bool:
    """Pickle can save it by reference: its module and qualified name lead back to it."""
    mod = sys.modules.get(getattr(obj, "__module__", None) or "")
    if mod is None:
        return False
    found: Any = mod
    for part in getattr(obj, "__qualname__", "").split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is obj


def loader_generators(loader: Any) -> dict[str, Any]:
    """The states of a DataLoader's generators (its own, its sampler's), by attribute path."""
    out = {}
    for path in ("generator", "sampler.generator", "batch_sampler.sampler.generator"):
        obj: Any = loader
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None and hasattr(obj, "get_state"):
            out[path] = obj.get_state()
    return out


def is_reiterable(obj: Any) -> bool:
    """Iterating it does not change it (a fresh iterator each time)."""
    if isinstance(obj, (list, tuple, dict, range, str, bytes, set, frozenset)):
        return True
    if lazy.is_dataloader(obj) or lazy.is_tensor(obj) or lazy.is_ndarray(obj):
        return True
    t = lazy.torch()
    if t is not None and isinstance(obj, t.utils.data.Dataset):
        return True
    try:
        return iter(obj) is not obj
    except TypeError:
        return True


def graph_alive(fn: Any, limit: int = 64) -> bool:
    """Could a backward pass still run through this autograd node?

    A backward pass frees the tensors each node of its graph saved; reading a freed one raises.
    So a graph whose first node with a saved tensor still has it is alive (a list of log-probs
    waiting for their episode's end, say); the `loss` of the last batch, after loss.backward(),
    is not. A graph with no saved tensor within `limit` nodes counts as alive (to be safe).
    """
    stack: list[Any] = [fn]
    seen: set[int] = set()
    while stack and len(seen) < limit:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for name in dir(node):
            if not name.startswith("_saved_"):
                continue
            try:
                value = getattr(node, name)
            except RuntimeError:
                return False  # freed by a backward pass
            if lazy.is_tensor(value):
                return True
        stack.extend(next_fn for next_fn, _ in getattr(node, "next_functions", ()))
    return True
