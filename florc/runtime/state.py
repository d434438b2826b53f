"""Capture and restore program state, in place, so object identity survives.

A snapshot is a tree of small nodes that copies values at the moment it is taken (never a live
tensor). Restoring walks the tree against the objects that exist now: modules, optimizers and
schedulers get `load_state_dict`, tensors `copy_`, lists and dicts are mutated in place, plain
objects have their `__dict__` restored attribute by attribute. Only values that cannot be updated
in place (numbers, strings, a name rebound to a new object) are rebound.

Restoring is two-phase: `check` first verifies every path can be restored, so a checkpoint that
does not fit the current objects is refused before anything changes.

torch and numpy are imported lazily: a script without them still works.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import random
import sys
import types
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MISSING = object()
IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, range, frozenset, type(Ellipsis))
REFERENCE_TYPES = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    type,
    types.MethodType,
    weakref.ref,
    weakref.ProxyType,
    weakref.CallableProxyType,
)


class CannotSnapshot(Exception):
    """Raised while capturing; `where` is the access path below the captured root (`.sock`,
    `[0].log_prob`), filled in on the way out so the message can name the object."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def under(self, segment: str) -> CannotSnapshot:
        self.where = segment + self.where
        return self

    def __str__(self) -> str:
        return self.message


class CannotRestore(Exception):
    pass


def _torch() -> Any:
    return sys.modules.get("torch")


def _numpy() -> Any:
    return sys.modules.get("numpy")


@dataclass
class Node:
    kind: str
    value: Any = None
    children: Any = None
    cls: Any = None
    extra: Any = None


@dataclass
class Snapshot:
    """Named roots (access paths) -> nodes, plus RNG states."""

    paths: dict[str, Node] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # paths unbound when captured
    omitted: dict[str, str] = field(
        default_factory=dict
    )  # optional paths that could not be captured
    rng: dict[str, Any] = field(default_factory=dict)
    # GPU copies still in flight: the writer waits on these events before reading tensors.
    pending: list[Any] = field(default_factory=list, repr=False, compare=False)
    nbytes: int = 0  # bytes of tensor and array data copied
    # paths whose object at capture is not the one they held when the code began (a loop body
    # that rebinds `output = ...`): restore gives them new objects instead of writing into the
    # current ones, which other variables may still hold (the last output in a list of them)
    rebound: list[str] = field(default_factory=list)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["pending"] = []
        return state

    def wait(self) -> None:
        """Block until every GPU-to-host copy of this snapshot has landed."""
        for event in self.pending:
            event.synchronize()
        self.pending = []


def _is_module(obj: Any) -> bool:
    t = _torch()
    return t is not None and isinstance(obj, t.nn.Module)


def _is_optimizer(obj: Any) -> bool:
    t = _torch()
    return t is not None and isinstance(obj, t.optim.Optimizer)


def _is_tensor(obj: Any) -> bool:
    t = _torch()
    return t is not None and isinstance(obj, t.Tensor)


def _is_dataloader(obj: Any) -> bool:
    t = _torch()
    return t is not None and isinstance(obj, t.utils.data.DataLoader)


def _is_reiterable(obj: Any) -> bool:
    """Iterating it does not change it (a fresh iterator each time)."""
    if isinstance(obj, (list, tuple, dict, range, str, bytes, set, frozenset)):
        return True
    if _is_dataloader(obj) or _is_tensor(obj):
        return True
    np = _numpy()
    if np is not None and isinstance(obj, np.ndarray):
        return True
    t = _torch()
    if t is not None and isinstance(obj, t.utils.data.Dataset):
        return True
    try:
        return iter(obj) is not obj
    except TypeError:
        return True


_side_streams: dict[Any, Any] = {}


def _side_stream(device: Any) -> Any:
    stream = _side_streams.get(device)
    if stream is None:
        stream = _side_streams[device] = _torch().cuda.Stream(device=device)
    return stream


class _Capturer:
    """Copies state into a snapshot tree. Every tensor is copied once (memoized by identity).

    CPU tensors are copied synchronously. GPU tensors go to pinned host buffers on a side
    stream that first waits for the training stream; the training stream then waits (on the
    GPU, not the CPU) for the copies before running anything else, so no later in-place update
    can tear them. `Snapshot.wait()` blocks until they have landed.

    With dry=True nothing is copied: it only adds up the bytes a capture would copy.
    """

    def __init__(self, dry: bool = False) -> None:
        self.memo: dict[int, Node] = {}
        self.keep: list[Any] = []  # keep ids stable while capturing
        self.clones: dict[int, Any] = {}
        self.dry = dry
        self.nbytes = 0
        self.cuda_devices: set[Any] = set()

    def clone(self, t: Any) -> Any:
        key = id(t)
        if key in self.clones:
            return self.clones[key]
        self.keep.append(t)
        self.nbytes += t.nelement() * t.element_size()
        if self.dry:
            copy_ = None
        elif t.device.type == "cuda":
            copy_ = self._clone_cuda(t)
        else:
            copy_ = t.detach().clone(memory_format=_torch().contiguous_format)
        self.clones[key] = copy_
        return copy_

    def _clone_cuda(self, t: Any) -> Any:
        torch = _torch()
        side = _side_stream(t.device)
        if t.device not in self.cuda_devices:
            side.wait_stream(torch.cuda.current_stream(t.device))
            self.cuda_devices.add(t.device)
        buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        with torch.cuda.stream(side):
            buf.copy_(t.detach(), non_blocking=True)
        t.record_stream(side)
        return buf

    def finish(self) -> list[Any]:
        """Make the training streams wait for the side-stream copies; events for the writer."""
        events = []
        torch = _torch()
        for device in self.cuda_devices:
            event = torch.cuda.Event()
            event.record(_side_stream(device))
            torch.cuda.current_stream(device).wait_event(event)
            events.append(event)
        return events

    def copy_tree(self, tree: Any) -> Any:
        """A copy of a state_dict-like tree of dicts, lists and tuples; tensors via clone()."""
        if _is_tensor(tree):
            return self.clone(tree)
        if isinstance(tree, dict):
            return type(tree)((k, self.copy_tree(v)) for k, v in tree.items())
        if isinstance(tree, list):
            return [self.copy_tree(v) for v in tree]
        if type(tree) is tuple:
            return tuple(self.copy_tree(v) for v in tree)
        if isinstance(tree, IMMUTABLE):
            return tree
        return None if self.dry else copy.deepcopy(tree)

    def capture(self, obj: Any, depth: int = 0) -> Node:
        if depth > 60:
            raise CannotSnapshot("object graph too deep")
        if isinstance(obj, (*IMMUTABLE, enum.Enum)):
            return Node("value", obj)
        if isinstance(obj, REFERENCE_TYPES):
            return Node("ref")
        key = id(obj)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        self.keep.append(obj)
        node = self._capture_new(obj, depth)
        self.memo[key] = node
        return node

    def _child(self, obj: Any, depth: int, segment: str) -> Node:
        try:
            return self.capture(obj, depth + 1)
        except CannotSnapshot as exc:
            raise exc.under(segment) from None

    def _capture_new(self, obj: Any, depth: int) -> Node:
        t = _torch()
        if _is_tensor(obj):
            if obj.grad_fn is not None and _graph_alive(obj.grad_fn):
                raise CannotSnapshot(
                    "holds a tensor whose autograd graph has not been backpropagated yet "
                    "(a restored copy would be cut off from it)"
                )
            grad = self.clone(obj.grad) if obj.is_leaf and obj.grad is not None else None
            return Node("tensor", self.clone(obj), extra=(str(obj.device), obj.requires_grad, grad))
        if _is_module(obj):
            state = {k: self.clone(v) for k, v in obj.state_dict(keep_vars=True).items()}
            grads = {
                n: (self.clone(p.grad) if p.grad is not None else None)
                for n, p in obj.named_parameters()
            }
            modes = [m.training for m in obj.modules()]
            node = Node("module", state, extra=(grads, modes), cls=type(obj), children={})
            self.memo[id(obj)] = node  # an attribute may refer back to the module
            for name, sub in obj.named_modules():
                attrs = _module_attributes(sub)
                if attrs:
                    where = f".{name}" if name else ""
                    node.children[name] = {
                        a: self._child(v, depth, f"{where}.{a}") for a, v in attrs.items()
                    }
            return node
        if _is_optimizer(obj):
            params = [p for g in obj.param_groups for p in g["params"]]
            values = [self.clone(p) for p in params]
            grads = [(self.clone(p.grad) if p.grad is not None else None) for p in params]
            state = self.copy_tree(obj.state_dict())
            return Node("optimizer", state, extra=(values, grads), cls=type(obj))
        if _is_dataloader(obj):
            return Node("dataloader", _loader_generators(obj))
        if t is not None and isinstance(obj, t.Generator):
            return Node("generator", obj.get_state())
        np = _numpy()
        if np is not None and isinstance(obj, np.ndarray):
            self.nbytes += obj.nbytes
            return Node("ndarray", None if self.dry else obj.copy())
        if np is not None and isinstance(obj, np.random.Generator):
            return Node("np_generator", copy.deepcopy(obj.bit_generator.state))
        if np is not None and isinstance(obj, np.random.RandomState):
            return Node("np_randomstate", obj.get_state())
        if isinstance(obj, random.Random):
            return Node("random", obj.getstate())
        if (
            hasattr(obj, "state_dict")
            and hasattr(obj, "load_state_dict")
            and not isinstance(obj, type)
        ):
            try:
                state = self.copy_tree(obj.state_dict())
            except Exception as exc:  # noqa: BLE001 - any failure means "cannot capture"
                raise CannotSnapshot(f"{type(obj).__name__}.state_dict() failed: {exc}") from None
            return Node("stateful", state, cls=type(obj))
        if type(obj) is list:
            node = Node("list", children=[])
            self.memo[id(obj)] = node
            node.children = [self._child(x, depth, f"[{i}]") for i, x in enumerate(obj)]
            return node
        if type(obj) is collections.deque:  # replay buffers, running windows
            node = Node("deque", children=[], extra=obj.maxlen)
            self.memo[id(obj)] = node
            node.children = [self._child(x, depth, f"[{i}]") for i, x in enumerate(obj)]
            return node
        if type(obj) is tuple:
            return Node(
                "tuple", children=[self._child(x, depth, f"[{i}]") for i, x in enumerate(obj)]
            )
        fields = _tuple_fields(obj)
        if fields is not None:  # a namedtuple or a structseq (torch.return_types): its fields
            names = [f".{f}" for f in fields] + [f"[{i}]" for i in range(len(fields), len(obj))]
            return Node(
                "namedtuple",
                children=[self._child(x, depth, w) for x, w in zip(obj, names)],
                cls=type(obj),
                extra="structseq" if not hasattr(type(obj), "_make") else None,
            )
        if isinstance(obj, dict) and type(obj).__init__ in (dict.__init__, _ordered_init()):
            node = Node("dict", children=[], cls=type(obj))
            self.memo[id(obj)] = node
            for k, v in obj.items():
                if not isinstance(k, IMMUTABLE + (tuple,)):
                    raise CannotSnapshot(f"dict key of type {type(k).__name__}")
                node.children.append((k, self._child(v, depth, f"[{k!r}]")))
            return node
        state = _object_state(obj)
        if state is not None:
            attrs, setattr_names, partial = state
            node = Node("object", partial, children={}, cls=type(obj), extra=setattr_names)
            self.memo[id(obj)] = node
            for k, v in attrs.items():
                node.children[k] = self._child(v, depth, f".{k}")
            return node
        if self.dry:
            return Node("copy")
        if isinstance(obj, (set, bytearray)):
            return Node("copy", copy.copy(obj))
        try:
            return Node("copy", copy.deepcopy(obj))
        except Exception as exc:  # noqa: BLE001
            raise CannotSnapshot(f"{type(obj).__name__} cannot be copied: {exc}") from None


def _ordered_init() -> Any:
    import collections

    return collections.OrderedDict.__init__


_MODULE_BOOKKEEPING: frozenset[str] | None = None


def _module_attributes(module: Any) -> dict[str, Any]:
    """A module's own plain attributes: its __dict__ less torch's bookkeeping (parameters,
    buffers, submodules, hooks, the training flag). torch's own module classes keep nothing
    there that training changes (their state is in parameters and buffers), so they have none."""
    global _MODULE_BOOKKEEPING
    cls = type(module)
    if cls.__module__.startswith("torch.") or cls.__module__ == "torch":
        return {}
    if _MODULE_BOOKKEEPING is None:
        fresh = _torch().nn.Module()
        _MODULE_BOOKKEEPING = frozenset(vars(fresh)) | {"_compiled_call_impl"}
    state = vars(module)
    if _leaves_out(module):
        state = module.__getstate__()
        if not isinstance(state, dict):
            return {}
    return {k: v for k, v in state.items() if k not in _MODULE_BOOKKEEPING}


def _leaves_out(module: Any) -> bool:
    """The module's class has a __getstate__ of its own: what it leaves out is not captured,
    and restoring keeps the live values of those attributes."""
    return type(module).__getstate__ is not _torch().nn.Module.__getstate__


def _tuple_fields(obj: Any) -> tuple[str, ...] | None:
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


_HEAPTYPE = 1 << 9


def _overrides(cls: type, name: str) -> bool:
    """A class of the MRO (not object, not SimpleNamespace) defines `name` itself."""
    return any(name in c.__dict__ for c in cls.__mro__ if c not in _ATTRIBUTE_BASES)


_ATTRIBUTE_BASES = (object, types.SimpleNamespace)


def _object_state(obj: Any) -> tuple[dict[str, Any], tuple[str, ...], bool] | None:
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
    import io

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
    if not isinstance(recorded, type) or _importable(recorded):
        return False
    return (
        current.__qualname__ == recorded.__qualname__ and current.__module__ == recorded.__module__
    )


def _importable(obj: Any) -> bool:
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


def _loader_generators(loader: Any) -> dict[str, Any]:
    out = {}
    for path in ("generator", "sampler.generator", "batch_sampler.sampler.generator"):
        obj: Any = loader
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None and hasattr(obj, "get_state"):
            out[path] = obj.get_state()
    return out


# --- restore -----------------------------------------------------------------


class _Restorer:
    """Applies nodes to current objects. With apply=False it only checks."""

    def __init__(self, apply: bool) -> None:
        self.apply = apply
        self.done: dict[int, Any] = {}

    def restore(self, current: Any, node: Node) -> Any:
        key = id(node)
        if key in self.done:
            return self.done[key]
        result = self._restore(current, node)
        self.done[key] = result
        return result

    def _restore(self, cur: Any, node: Node) -> Any:
        k = node.kind
        if k == "value":
            return node.value
        if k == "ref":
            if cur is MISSING:
                raise CannotRestore("a function or module binding cannot be recreated")
            return cur
        if k == "tensor":
            value, (device, requires_grad, grad) = node.value, node.extra
            if _is_tensor(cur) and cur.shape == value.shape and cur.dtype == value.dtype:
                if self.apply:
                    t = _torch()
                    with t.no_grad():
                        cur.copy_(value)
                    _set_grad(cur, grad)
                return cur
            if not self.apply:
                return None
            fresh = value.to(device)
            if requires_grad:
                fresh.requires_grad_(True)
            return fresh
        if k == "module":
            if not (_is_module(cur) and same_class(type(cur), node.cls)):
                raise CannotRestore(f"expected a {node.cls.__name__} module to restore into")
            if self.apply:
                _load_module(cur, node)
            if node.children:
                subs = dict(cur.named_modules())
                for name, attrs in node.children.items():
                    sub = subs.get(name)
                    if sub is None:
                        raise CannotRestore(f"no submodule {name!r} to restore attributes into")
                    d = vars(sub)
                    new = {a: self.restore(d.get(a, MISSING), c) for a, c in attrs.items()}
                    if self.apply:
                        gone = [] if _leaves_out(sub) else _module_attributes(sub)
                        for a in [a for a in gone if a not in new]:
                            del d[a]
                        d.update(new)
            return cur
        if k == "optimizer":
            if not (_is_optimizer(cur) and type(cur) is node.cls):
                raise CannotRestore(f"expected a {node.cls.__name__} optimizer to restore into")
            if self.apply:
                t = _torch()
                params = [p for g in cur.param_groups for p in g["params"]]
                values, grads = node.extra
                with t.no_grad():
                    for p, v, g in zip(params, values, grads):
                        p.copy_(v)
                        _set_grad(p, g)
                cur.load_state_dict(copy.deepcopy(node.value))
            return cur
        if k == "stateful":
            if type(cur) is not node.cls:
                raise CannotRestore(f"expected a {node.cls.__name__} to restore into")
            if self.apply:
                cur.load_state_dict(copy.deepcopy(node.value))
            return cur
        if k == "dataloader":
            if not _is_dataloader(cur):
                raise CannotRestore("expected a DataLoader")
            if self.apply:
                for path, state in node.value.items():
                    obj: Any = cur
                    for part in path.split("."):
                        obj = getattr(obj, part, None)
                    if obj is not None:
                        obj.set_state(state)
            return cur
        if k == "generator":
            t = _torch()
            if t is not None and isinstance(cur, t.Generator):
                if self.apply:
                    cur.set_state(node.value)
                return cur
            if not self.apply:
                return None
            g = t.Generator()
            g.set_state(node.value)
            return g
        if k == "ndarray":
            np = _numpy()
            if (
                isinstance(cur, np.ndarray)
                and cur.shape == node.value.shape
                and cur.dtype == node.value.dtype
                and cur.flags.writeable
            ):
                if self.apply:
                    np.copyto(cur, node.value)
                return cur
            return node.value.copy() if self.apply else None
        if k == "np_generator":
            np = _numpy()
            if isinstance(cur, np.random.Generator):
                if self.apply:
                    cur.bit_generator.state = copy.deepcopy(node.value)
                return cur
            raise CannotRestore("expected a numpy Generator")
        if k == "np_randomstate":
            np = _numpy()
            if isinstance(cur, np.random.RandomState):
                if self.apply:
                    cur.set_state(node.value)
                return cur
            raise CannotRestore("expected a numpy RandomState")
        if k == "random":
            if isinstance(cur, random.Random):
                if self.apply:
                    cur.setstate(node.value)
                return cur
            raise CannotRestore("expected a random.Random")
        if k == "copy":
            return _restore_copy(cur, node.value) if self.apply else None
        if k == "list":
            items = cur if type(cur) is list else []
            new = [
                self.restore(items[i] if i < len(items) else MISSING, c)
                for i, c in enumerate(node.children)
            ]
            if type(cur) is list:
                if self.apply:
                    cur[:] = new
                return cur
            return new
        if k == "deque":
            same = type(cur) is collections.deque and cur.maxlen == node.extra
            items = list(cur) if same else []
            new = [
                self.restore(items[i] if i < len(items) else MISSING, c)
                for i, c in enumerate(node.children)
            ]
            if same:
                if self.apply:
                    cur.clear()
                    cur.extend(new)
                return cur
            return collections.deque(new, maxlen=node.extra) if self.apply else None
        if k == "tuple":
            items = cur if type(cur) is tuple and len(cur) == len(node.children) else ()
            return tuple(
                self.restore(items[i] if items else MISSING, c) for i, c in enumerate(node.children)
            )
        if k == "namedtuple":
            same = (
                isinstance(cur, tuple)
                and same_class(type(cur), node.cls)
                and len(cur) == len(node.children)
            )
            new = [
                self.restore(cur[i] if same else MISSING, c) for i, c in enumerate(node.children)
            ]
            if same and all(x is y for x, y in zip(new, cur)):
                return cur  # nothing rebound: keep the tuple others may hold
            if not self.apply:
                return None
            cls = type(cur) if same else node.cls
            return cls(new) if node.extra == "structseq" else cls._make(new)
        if k == "dict":
            cls = node.cls or dict
            same = type(cur) is cls
            base = cur if same else {}
            pairs = [(key, self.restore(base.get(key, MISSING), c)) for key, c in node.children]
            if same:
                if self.apply:
                    cur.clear()
                    cur.update(pairs)
                return cur
            return cls(pairs)
        if k == "object":
            cls, setattr_names, partial = node.cls, node.extra or (), bool(node.value)
            same = cur is not MISSING and same_class(type(cur), cls)
            if same:
                target = cur
            else:
                if cur is not MISSING and cur is not None and hasattr(cur, "__dict__"):
                    raise CannotRestore(f"expected a {cls.__name__}")
                if partial or cls.__new__ is not object.__new__:
                    raise CannotRestore(f"a {cls.__name__} cannot be recreated from its attributes")
                target = object.__new__(cls) if self.apply else None
            attrs = _attributes_of(cur, setattr_names) if same else {}
            new = {a: self.restore(attrs.get(a, MISSING), c) for a, c in node.children.items()}
            if self.apply and target is not None:
                if hasattr(target, "__dict__"):
                    d = vars(target)
                    if not partial:
                        for a in [a for a in d if a not in new]:
                            del d[a]
                    d.update({a: v for a, v in new.items() if a not in setattr_names})
                for a in setattr_names:
                    object.__setattr__(target, a, new[a])
            return target
        raise CannotRestore(f"unknown snapshot kind {k}")


def _attributes_of(obj: Any, setattr_names: tuple[str, ...]) -> dict[str, Any]:
    attrs = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    for name in setattr_names:
        try:
            attrs[name] = getattr(obj, name)
        except AttributeError:
            pass
    return attrs


def _restore_copy(cur: Any, value: Any) -> Any:
    """A copied value, restored into the current object where its type allows (a set, a
    deque, a dict subclass keep their identity); otherwise the copy itself, rebound."""
    import collections

    fresh = copy.deepcopy(value)
    if cur is MISSING or type(cur) is not type(fresh):
        return fresh
    if isinstance(cur, set):
        cur.clear()
        cur.update(fresh)
    elif isinstance(cur, bytearray):
        cur[:] = fresh
    elif isinstance(cur, collections.deque) and cur.maxlen == fresh.maxlen:
        cur.clear()
        cur.extend(fresh)
    elif isinstance(cur, dict):
        cur.clear()
        cur.update(fresh)
        if isinstance(cur, collections.defaultdict):
            cur.default_factory = fresh.default_factory
    else:
        return fresh
    if hasattr(fresh, "__dict__"):  # a subclass's own attributes
        vars(cur).clear()
        vars(cur).update(vars(fresh))
    return cur


def _set_grad(t: Any, grad: Any) -> None:
    if grad is None:
        t.grad = None
    elif t.grad is not None and t.grad.shape == grad.shape:
        t.grad.copy_(grad)
    else:
        t.grad = grad.to(t.device)


def _load_module(module: Any, node: Node) -> None:
    t = _torch()
    state = module.state_dict(keep_vars=True)
    with t.no_grad():
        for name, value in node.value.items():
            cur = state.get(name)
            if cur is not None and _is_tensor(cur) and cur.shape == value.shape:
                cur.copy_(value)
            else:
                module.load_state_dict({name: value}, strict=False)
    grads, modes = node.extra
    for name, p in module.named_parameters():
        _set_grad(p, grads.get(name))
    for m, mode in zip(module.modules(), modes):
        m.training = mode


# --- paths -------------------------------------------------------------------


class Scope:
    """Where access paths are resolved: a frame's locals, its globals, other modules."""

    def __init__(self, frame: types.FrameType) -> None:
        self.frame = frame
        code = frame.f_code
        self.local_names = set(code.co_varnames) | set(code.co_cellvars) | set(code.co_freevars)
        self.is_module = frame.f_globals is frame.f_locals
        self.locals = frame.f_locals
        self.globals = frame.f_globals
        self.local_writes: dict[str, Any] = {}

    def _root(self, name: str) -> tuple[dict[str, Any] | None, str]:
        if name.startswith("@"):
            modname, _, var = name[1:].partition(":")
            mod = sys.modules.get(modname)
            return (vars(mod) if mod is not None else None), var
        if not self.is_module and name in self.local_names:
            return self.locals, name
        return self.globals, name

    def get(self, path: str) -> Any:
        parts = _split(path)
        ns, name = self._root(parts[0])
        if ns is None or name not in ns:
            return MISSING
        obj = ns[name]
        for attr in parts[1:]:
            try:
                obj = getattr(obj, attr)
            except Exception:  # noqa: BLE001
                return MISSING
        return obj

    def set(self, path: str, value: Any) -> None:
        parts = _split(path)
        if len(parts) == 1:
            ns, name = self._root(parts[0])
            if ns is None:
                return
            if ns is self.locals and not self.is_module:
                self.local_writes[name] = value
            ns[name] = value
            return
        parent = self.get(".".join(parts[:-1]))
        if parent is not MISSING:
            setattr(parent, parts[-1], value)

    def commit(self) -> None:
        """Write rebound locals back into the running function's frame."""
        if self.local_writes:
            write_frame_locals(self.frame, self.local_writes)
            self.local_writes = {}


def _split(path: str) -> list[str]:
    if path.startswith("@"):
        head, _, rest = path.partition(":")
        var, *attrs = rest.split(".")
        return [f"{head}:{var}", *attrs]
    return path.split(".")


def write_frame_locals(frame: types.FrameType, values: dict[str, Any]) -> None:
    if sys.version_info >= (3, 13):
        for k, v in values.items():
            frame.f_locals[k] = v  # write-through proxy (PEP 667)
        return
    import ctypes

    f_locals = frame.f_locals
    f_locals.update(values)
    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))


def _graph_alive(fn: Any, limit: int = 64) -> bool:
    """Could a backward pass still run through this autograd node?

    A backward pass frees the tensors each node of its graph saved; reading a freed one raises.
    So a graph whose first node with a saved tensor still has it is alive (a list of log-probs
    waiting for their episode's end, say); the `loss` of the last batch, after loss.backward(),
    is not. A graph with no saved tensor within `limit` nodes counts as alive (to be safe).
    """
    stack, seen = [fn], set()
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
            if _is_tensor(value):
                return True
        stack.extend(next_fn for next_fn, _ in getattr(node, "next_functions", ()))
    return True


def identities(scope: Scope, paths: Iterable[str]) -> dict[str, Any]:
    """The objects at these paths now, for a later capture() to tell which paths were rebound
    in between. They are held, so that no other object can take their id meanwhile."""
    return {path: scope.get(path) for path in paths}


def capture(
    scope: Scope, paths: Iterable[str], required: set[str], entry: dict[str, Any] | None = None
) -> Snapshot:
    """Snapshot the given paths. Raises CannotSnapshot when a required path fails.

    entry: identities() taken where the code that changes these paths began (a block's entry,
    the main loop's start); the paths holding other objects now are marked rebound."""
    snap = Snapshot()
    cap = _Capturer()
    try:
        _capture_paths(cap, snap, scope, paths, required)
    finally:
        if cap.cuda_devices:
            snap.pending = cap.finish()
    if entry:
        snap.rebound = [
            p
            for p in snap.paths
            if p in entry and entry[p] is not MISSING and entry[p] is not scope.get(p)
        ]
    snap.nbytes = cap.nbytes
    snap.rng = capture_rng()
    return snap


def estimate_bytes(scope: Scope, paths: Iterable[str]) -> int:
    """The bytes of tensor and array data a capture of these paths would copy (copies nothing)."""
    cap = _Capturer(dry=True)
    try:
        _capture_paths(cap, Snapshot(), scope, paths, set())
    except CannotSnapshot:
        pass
    return cap.nbytes


def _capture_paths(
    cap: _Capturer, snap: Snapshot, scope: Scope, paths: Iterable[str], required: set[str]
) -> None:
    for path in paths:
        obj = scope.get(path)
        if obj is MISSING:
            snap.missing.append(path)
            continue
        try:
            snap.paths[path] = cap.capture(obj)
        except CannotSnapshot as exc:
            if path in required:
                raise CannotSnapshot(f"`{path}{exc.where}`: {exc}", path + exc.where) from None
            snap.omitted[path] = f"`{path}{exc.where}`: {exc}"


def capture_iterated(scope: Scope, paths: Iterable[str]) -> dict[str, str]:
    """Iterated paths that are iterators (consumed by the loop): not restorable -> reasons."""
    problems = {}
    for path in paths:
        obj = scope.get(path)
        if obj is not MISSING and not _is_reiterable(obj):
            problems[path] = f"`{path}` is an iterator that the loop consumes"
    return problems


def restore(scope: Scope, snap: Snapshot) -> None:
    """Restore all paths in place; raises CannotRestore (before changing anything) if it can't."""
    rebound = set(getattr(snap, "rebound", ()))  # snapshots of older versions have none
    for phase_apply in (False, True):
        r = _Restorer(apply=phase_apply)
        for path, node in snap.paths.items():
            cur = scope.get(path)
            value = r.restore(MISSING if path in rebound else cur, node)
            if phase_apply and value is not cur:
                scope.set(path, value)
    scope.commit()
    restore_rng(snap.rng)


def loader_generators_in(scope: Scope, paths: Iterable[str]) -> dict[str, Any]:
    out = {}
    for path in paths:
        obj = scope.get(path)
        if _is_dataloader(obj):
            out[path] = _loader_generators(obj)
    return out


# --- RNG -----------------------------------------------------------------------


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
    state: dict[str, Any] = {"python": random.getstate()}
    np = _numpy()
    if np is not None:
        state["numpy"] = np.random.get_state()
    t = _torch()
    if t is not None:
        state["torch"] = t.get_rng_state()
        if t.cuda.is_available() and t.cuda.is_initialized():
            state["cuda"] = t.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    if "python" in state:
        random.setstate(state["python"])
    np = _numpy()
    if np is not None and "numpy" in state:
        np.random.set_state(state["numpy"])
    t = _torch()
    if t is not None and "torch" in state:
        t.set_rng_state(state["torch"])
        if "cuda" in state and t.cuda.is_available():
            t.cuda.set_rng_state_all(state["cuda"])
