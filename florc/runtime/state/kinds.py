"""The registry of node kinds: one handler per kind, shared by capture, restore and fidelity.

Each handler knows one kind of value and all that is done with it:
- `capture` copies a live object into a node (or declines it: the next handler is asked);
- `restore` applies a node to the object its path holds now, in place wherever that object
  fits, so that every other reference to it sees the restored state (an optimizer keeps its
  parameters, an alias of a list sees the list's restored items); a new object only where the
  current one does not fit or the path was unbound;
- `compare` walks two nodes of the kind for fidelity (fidelity.py owns the tolerances and
  compares the leaves; a handler says which parts of a node are compared with which);
- `requires` (optional) names the classes an object of the kind is an instance of, so that
  capture need not ask the handler about objects of other types;
- `parts` names a node's children by the access segment that leads to each (`[0]`, `.attr`),
  for messages that point at one value inside a checkpoint.

What a node's fields hold, by kind (they are pickled into the store: keep them):

    value           value: the value itself
    ref             (nothing: the live binding is kept)
    tensor          value: a copy; extra: (device, requires_grad, a copy of .grad or None)
    module          value: state_dict copies; extra: (grads by parameter name, the training
                    flag of each module in .modules() order); cls; children: submodule name ->
                    {attribute: node} for its plain attributes (None: recorded without them)
    optimizer       value: a copy of state_dict(); extra: (parameter copies, grad copies); cls
    dataloader      value: its generators' states by attribute path
    generator       value: torch.Generator.get_state()
    ndarray         value: a copy (None in a dry run)
    np_generator    value: bit_generator.state
    np_randomstate  value: get_state()
    random          value: getstate()
    stateful        value: a copy of state_dict(); cls
    list, tuple     children: [node]
    deque           children: [node]; extra: maxlen
    namedtuple      children: [node]; cls; extra: "structseq" for one (no `_make`), else None
    dict            children: [(key, node)]; cls: dict or OrderedDict
    object          children: {attribute: node}; cls; value: partial (its __getstate__ leaves
                    attributes out); extra: the attributes set with object.__setattr__ (slots,
                    frozen dataclass fields)
    copy            value: a deep copy (None in a dry run)
"""

from __future__ import annotations

import collections
import copy
import enum
import random
import types
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from florc.runtime.state import lazy
from florc.runtime.state.nodes import MISSING, CannotRestore, CannotSnapshot, Kind, Node
from florc.runtime.state.objects import (
    attributes_of,
    graph_alive,
    leaves_out,
    loader_generators,
    module_attributes,
    object_state,
    same_class,
    tuple_fields,
)

if TYPE_CHECKING:
    from florc.runtime.state.capture import Capturer
    from florc.runtime.state.restore import Restorer

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
_VALUE_TYPES = (*IMMUTABLE, enum.Enum)
_PLAIN_DICT_INITS = (dict.__init__, collections.OrderedDict.__init__)


class Comparison(Protocol):
    """What a handler's `compare` needs of the fidelity walk (fidelity.SnapshotDiff)."""

    def node(self, a: Node, b: Node) -> None:
        """Compare two child nodes (of any kind)."""

    def tree(self, a: Any, b: Any) -> None:
        """Compare two plain values: dicts, sequences, tensors, arrays, numbers, objects."""

    def differ(self) -> None:
        """The two differ in structure or kind."""


class Handler:
    """One kind of node. The base class stands for a kind this florc does not know (a newer
    store's): it cannot be restored, and is compared by its value and extra."""

    kind: ClassVar[Kind]
    tag: ClassVar[str] = "?"  # kind's value: the plain string stored in Node.kind
    # one node per object, memoized by identity (two paths to one list restore to one list).
    # The unshared kinds (values, references: no identity to keep) come first in HANDLERS and
    # are asked before the memo is looked at
    shared: ClassVar[bool] = True

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "kind" in cls.__dict__:
            cls.tag = cls.kind.value

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        """A node for `obj`, or None when `obj` is not of this kind."""
        return None

    def requires(self) -> tuple[type, ...] | None:
        """Classes an object must be an instance of to be of this kind, where its capture
        begins by testing that (empty: none, its library is not loaded); None: capture must
        see each object. Lets capture skip the handler for a type that is none of these."""
        return None

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        """The object the path holds once `node` is restored into `cur` (MISSING: unbound, or
        rebound since). With r.apply False, change nothing; raise CannotRestore if it can't."""
        raise CannotRestore(f"unknown snapshot kind {node.kind}")

    def compare(self, d: Comparison, a: Node, b: Node) -> None:
        """Compare two nodes of this kind."""
        d.tree((a.value, a.extra), (b.value, b.extra))

    def parts(self, node: Node) -> list[tuple[str, Node]]:
        """The node's children, each with the access segment that leads to it."""
        return []


# --- leaves ------------------------------------------------------------------


class ValueKind(Handler):
    kind = Kind.VALUE
    shared = False

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        return Node(self.tag, obj) if isinstance(obj, _VALUE_TYPES) else None

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        return node.value


class RefKind(Handler):
    kind = Kind.REF
    shared = False

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        return Node(self.tag) if isinstance(obj, REFERENCE_TYPES) else None

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        if cur is MISSING:
            raise CannotRestore("a function or module binding cannot be recreated")
        return cur

    def compare(self, d: Comparison, a: Node, b: Node) -> None:
        return  # a binding, not state


class TensorKind(Handler):
    kind = Kind.TENSOR

    def requires(self) -> tuple[type, ...] | None:
        t = lazy.torch()
        return (t.Tensor,) if t is not None else ()

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if not lazy.is_tensor(obj):
            return None
        if obj.grad_fn is not None and graph_alive(obj.grad_fn):
            raise CannotSnapshot(
                "holds a tensor whose autograd graph has not been backpropagated yet "
                "(a restored copy would be cut off from it)"
            )
        grad = cap.clone(obj.grad) if obj.is_leaf and obj.grad is not None else None
        return Node(self.tag, cap.clone(obj), extra=(str(obj.device), obj.requires_grad, grad))

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        value, (device, requires_grad, grad) = node.value, node.extra
        if lazy.is_tensor(cur) and cur.shape == value.shape and cur.dtype == value.dtype:
            if r.apply:
                with lazy.torch().no_grad():
                    cur.copy_(value)
                _set_grad(cur, grad)
            return cur
        if not r.apply:
            return None
        fresh = value.to(device)
        if requires_grad:
            fresh.requires_grad_(True)
        return fresh


class GeneratorKind(Handler):
    """A torch.Generator the script holds (a DataLoader's, a sampler's)."""

    kind = Kind.GENERATOR

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        t = lazy.torch()
        if t is None or not isinstance(obj, t.Generator):
            return None
        return Node(self.tag, obj.get_state())

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        t = lazy.torch()
        if t is not None and isinstance(cur, t.Generator):
            if r.apply:
                cur.set_state(node.value)
            return cur
        if not r.apply:
            return None
        g = t.Generator()
        g.set_state(node.value)
        return g


class NdarrayKind(Handler):
    kind = Kind.NDARRAY

    def requires(self) -> tuple[type, ...] | None:
        np = lazy.numpy()
        return (np.ndarray,) if np is not None else ()

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if not lazy.is_ndarray(obj):
            return None
        cap.nbytes += obj.nbytes
        return Node(self.tag, None if cap.dry else obj.copy())

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        np = lazy.numpy()
        if (
            isinstance(cur, np.ndarray)
            and cur.shape == node.value.shape
            and cur.dtype == node.value.dtype
            and cur.flags.writeable
        ):
            if r.apply:
                np.copyto(cur, node.value)
            return cur
        return node.value.copy() if r.apply else None


class NpGeneratorKind(Handler):
    kind = Kind.NP_GENERATOR

    def requires(self) -> tuple[type, ...] | None:
        np = lazy.numpy()
        return (np.random.Generator,) if np is not None else ()

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        np = lazy.numpy()
        if np is None or not isinstance(obj, np.random.Generator):
            return None
        return Node(self.tag, copy.deepcopy(obj.bit_generator.state))

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        if isinstance(cur, lazy.numpy().random.Generator):
            if r.apply:
                cur.bit_generator.state = copy.deepcopy(node.value)
            return cur
        raise CannotRestore("expected a numpy Generator")


class NpRandomStateKind(Handler):
    kind = Kind.NP_RANDOMSTATE

    def requires(self) -> tuple[type, ...] | None:
        np = lazy.numpy()
        return (np.random.RandomState,) if np is not None else ()

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        np = lazy.numpy()
        if np is None or not isinstance(obj, np.random.RandomState):
            return None
        return Node(self.tag, obj.get_state())

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        if isinstance(cur, lazy.numpy().random.RandomState):
            if r.apply:
                cur.set_state(node.value)
            return cur
        raise CannotRestore("expected a numpy RandomState")


class RandomKind(Handler):
    kind = Kind.RANDOM

    def requires(self) -> tuple[type, ...] | None:
        return (random.Random,)

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        return Node(self.tag, obj.getstate()) if isinstance(obj, random.Random) else None

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        if isinstance(cur, random.Random):
            if r.apply:
                cur.setstate(node.value)
            return cur
        raise CannotRestore("expected a random.Random")


# --- objects with a state_dict ------------------------------------------------


class ModuleKind(Handler):
    kind = Kind.MODULE

    def requires(self) -> tuple[type, ...] | None:
        t = lazy.torch()
        return (t.nn.Module,) if t is not None else ()

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if not lazy.is_module(obj):
            return None
        state = {k: cap.clone(v) for k, v in obj.state_dict(keep_vars=True).items()}
        grads = {
            n: (cap.clone(p.grad) if p.grad is not None else None)
            for n, p in obj.named_parameters()
        }
        modes = [m.training for m in obj.modules()]
        node = Node(self.tag, state, extra=(grads, modes), cls=type(obj), children={})
        cap.share(obj, node)  # an attribute may refer back to the module
        for name, sub in obj.named_modules():
            attrs = module_attributes(sub)
            if attrs:
                where = f".{name}" if name else ""
                node.children[name] = {
                    a: cap.child(v, depth, f"{where}.{a}") for a, v in attrs.items()
                }
        return node

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        if not (lazy.is_module(cur) and same_class(type(cur), node.cls)):
            raise CannotRestore(f"expected a {node.cls.__name__} module to restore into")
        if r.apply:
            _load_module(cur, node)
        r.begin(node, cur)
        if node.children:
            subs = dict(cur.named_modules())
            for name, attrs in node.children.items():
                sub = subs.get(name)
                if sub is None:
                    raise CannotRestore(f"no submodule {name!r} to restore attributes into")
                d: dict[str, Any] = sub.__dict__
                new = {a: r.restore(d.get(a, MISSING), c) for a, c in attrs.items()}
                if r.apply:
                    gone = [] if leaves_out(sub) else module_attributes(sub)
                    for a in [a for a in gone if a not in new]:
                        del d[a]
                    d.update(new)
        return cur

    def compare(self, d: Comparison, a: Node, b: Node) -> None:
        super().compare(d, a, b)
        # its plain attributes, submodule by submodule (None: recorded without them)
        ca, cb = a.children, b.children
        if ca is None or cb is None:
            return
        if set(ca) != set(cb):
            d.differ()
        for name in set(ca) & set(cb):
            if set(ca[name]) != set(cb[name]):
                d.differ()
            for attr in set(ca[name]) & set(cb[name]):
                d.node(ca[name][attr], cb[name][attr])

    def parts(self, node: Node) -> list[tuple[str, Node]]:
        return [
            (f".{name}.{a}" if name else f".{a}", c)
            for name, attrs in node.children.items()
            for a, c in attrs.items()
        ]


class OptimizerKind(Handler):
    kind = Kind.OPTIMIZER

    def requires(self) -> tuple[type, ...] | None:
        t = lazy.torch()
        return (t.optim.Optimizer,) if t is not None else ()

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if not lazy.is_optimizer(obj):
            return None
        params = [p for g in obj.param_groups for p in g["params"]]
        values = [cap.clone(p) for p in params]
        grads = [(cap.clone(p.grad) if p.grad is not None else None) for p in params]
        state = cap.copy_tree(obj.state_dict())
        return Node(self.tag, state, extra=(values, grads), cls=type(obj))

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        if not (lazy.is_optimizer(cur) and type(cur) is node.cls):
            raise CannotRestore(f"expected a {node.cls.__name__} optimizer to restore into")
        if r.apply:
            params = [p for g in cur.param_groups for p in g["params"]]
            values, grads = node.extra
            with lazy.torch().no_grad():
                for p, v, g in zip(params, values, grads):
                    p.copy_(v)
                    _set_grad(p, g)
            cur.load_state_dict(copy.deepcopy(node.value))
        return cur


class DataLoaderKind(Handler):
    """A DataLoader: only the states of its generators (its dataset is not its state)."""

    kind = Kind.DATALOADER

    def requires(self) -> tuple[type, ...] | None:
        t = lazy.torch()
        return (t.utils.data.DataLoader,) if t is not None else ()

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        return Node(self.tag, loader_generators(obj)) if lazy.is_dataloader(obj) else None

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        if not lazy.is_dataloader(cur):
            raise CannotRestore("expected a DataLoader")
        if r.apply:
            for path, state in node.value.items():
                obj: Any = cur
                for part in path.split("."):
                    obj = getattr(obj, part, None)
                if obj is not None:
                    obj.set_state(state)
        return cur


class StatefulKind(Handler):
    """Anything else with state_dict() and load_state_dict(): LR schedulers, grad scalers."""

    kind = Kind.STATEFUL

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            return None
        try:
            state = cap.copy_tree(obj.state_dict())
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot capture"
            raise CannotSnapshot(f"{type(obj).__name__}.state_dict() failed: {exc}") from None
        return Node(self.tag, state, cls=type(obj))

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        if type(cur) is not node.cls:
            raise CannotRestore(f"expected a {node.cls.__name__} to restore into")
        if r.apply:
            cur.load_state_dict(copy.deepcopy(node.value))
        return cur


# --- containers ----------------------------------------------------------------


class _Sequence(Handler):
    """Children in order; compared position by position."""

    def compare(self, d: Comparison, a: Node, b: Node) -> None:
        if len(a.children) != len(b.children):
            d.differ()
        for x, y in zip(a.children, b.children):
            d.node(x, y)

    def parts(self, node: Node) -> list[tuple[str, Node]]:
        return [(f"[{i}]", c) for i, c in enumerate(node.children)]


class ListKind(_Sequence):
    kind = Kind.LIST

    def requires(self) -> tuple[type, ...] | None:
        return (list,)

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if type(obj) is not list:
            return None
        node = Node(self.tag, children=[])
        cap.share(obj, node)
        node.children = [cap.child(x, depth, f"[{i}]") for i, x in enumerate(obj)]
        return node

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        same = type(cur) is list
        target = cur if same else []
        r.begin(node, target)
        items = cur if same else []
        new = [
            r.restore(items[i] if i < len(items) else MISSING, c)
            for i, c in enumerate(node.children)
        ]
        if r.apply or not same:
            target[:] = new
        return target


class DequeKind(_Sequence):
    """A collections.deque (replay buffers, running windows), with its maxlen."""

    kind = Kind.DEQUE

    def requires(self) -> tuple[type, ...] | None:
        return (collections.deque,)

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if type(obj) is not collections.deque:
            return None
        node = Node(self.tag, children=[], extra=obj.maxlen)
        cap.share(obj, node)
        node.children = [cap.child(x, depth, f"[{i}]") for i, x in enumerate(obj)]
        return node

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        same = type(cur) is collections.deque and cur.maxlen == node.extra
        if same:
            target = cur
        else:
            target = collections.deque(maxlen=node.extra) if r.apply else None
        r.begin(node, target)
        items = list(cur) if same else []
        new = [
            r.restore(items[i] if i < len(items) else MISSING, c)
            for i, c in enumerate(node.children)
        ]
        if r.apply:
            target.clear()
            target.extend(new)
        return target


class TupleKind(_Sequence):
    """A plain tuple: immutable, so restored as a new tuple of its restored items."""

    kind = Kind.TUPLE

    def requires(self) -> tuple[type, ...] | None:
        return (tuple,)

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if type(obj) is not tuple:
            return None
        return Node(self.tag, children=[cap.child(x, depth, f"[{i}]") for i, x in enumerate(obj)])

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        items = cur if type(cur) is tuple and len(cur) == len(node.children) else ()
        return tuple(
            r.restore(items[i] if items else MISSING, c) for i, c in enumerate(node.children)
        )


class NamedTupleKind(_Sequence):
    """A namedtuple or a structseq (torch.return_types): walked field by field; the tuple is
    kept when no field was rebound."""

    kind = Kind.NAMEDTUPLE

    def requires(self) -> tuple[type, ...] | None:
        return (tuple,)

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        fields = tuple_fields(obj)
        if fields is None:
            return None
        names = [f".{f}" for f in fields] + [f"[{i}]" for i in range(len(fields), len(obj))]
        return Node(
            self.tag,
            children=[cap.child(x, depth, w) for x, w in zip(obj, names)],
            cls=type(obj),
            extra="structseq" if not hasattr(type(obj), "_make") else None,
        )

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        same = (
            isinstance(cur, tuple)
            and same_class(type(cur), node.cls)
            and len(cur) == len(node.children)
        )
        new = [r.restore(cur[i] if same else MISSING, c) for i, c in enumerate(node.children)]
        if same and all(x is y for x, y in zip(new, cur)):
            return cur  # nothing rebound: keep the tuple others may hold
        if not r.apply:
            return None
        cls = type(cur) if same else node.cls
        return cls(new) if node.extra == "structseq" else cls._make(new)


class DictKind(Handler):
    """A dict or an OrderedDict (a subclass with its own __init__ is copied whole)."""

    kind = Kind.DICT

    def requires(self) -> tuple[type, ...] | None:
        return (dict,)

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if not (isinstance(obj, dict) and type(obj).__init__ in _PLAIN_DICT_INITS):
            return None
        node = Node(self.tag, children=[], cls=type(obj))
        cap.share(obj, node)
        for k, v in obj.items():
            if not isinstance(k, IMMUTABLE + (tuple,)):
                raise CannotSnapshot(f"dict key of type {type(k).__name__}")
            node.children.append((k, cap.child(v, depth, f"[{k!r}]")))
        return node

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        cls = node.cls or dict
        same = type(cur) is cls
        target = cur if same else cls()
        r.begin(node, target)
        base = cur if same else {}
        pairs = [(key, r.restore(base.get(key, MISSING), c)) for key, c in node.children]
        if r.apply or not same:
            target.clear()
            target.update(pairs)
        return target

    def compare(self, d: Comparison, a: Node, b: Node) -> None:
        ka, kb = dict(a.children), dict(b.children)
        if set(ka) != set(kb):
            d.differ()
        for k in set(ka) & set(kb):
            d.node(ka[k], kb[k])

    def parts(self, node: Node) -> list[tuple[str, Node]]:
        return [(f"[{key!r}]", c) for key, c in node.children]


class ObjectKind(Handler):
    """A plain Python object (its state all in its attributes): restored attribute by
    attribute into the same object; attributes added since are removed."""

    kind = Kind.OBJECT

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        state = object_state(obj)
        if state is None:
            return None
        attrs, setattr_names, partial = state
        node = Node(self.tag, partial, children={}, cls=type(obj), extra=setattr_names)
        cap.share(obj, node)
        for k, v in attrs.items():
            node.children[k] = cap.child(v, depth, f".{k}")
        return node

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        cls, setattr_names, partial = node.cls, node.extra or (), bool(node.value)
        same = cur is not MISSING and same_class(type(cur), cls)
        if same:
            target = cur
        else:
            if cur is not MISSING and cur is not None and hasattr(cur, "__dict__"):
                raise CannotRestore(f"expected a {cls.__name__}")
            if partial or cls.__new__ is not object.__new__:
                raise CannotRestore(f"a {cls.__name__} cannot be recreated from its attributes")
            target = object.__new__(cls) if r.apply else None
        r.begin(node, target)
        attrs = attributes_of(cur, setattr_names) if same else {}
        new = {a: r.restore(attrs.get(a, MISSING), c) for a, c in node.children.items()}
        if r.apply and target is not None:
            if hasattr(target, "__dict__"):
                d = vars(target)
                if not partial:
                    for a in [a for a in d if a not in new]:
                        del d[a]
                d.update({a: v for a, v in new.items() if a not in setattr_names})
            for a in setattr_names:
                object.__setattr__(target, a, new[a])
        return target

    def compare(self, d: Comparison, a: Node, b: Node) -> None:
        if set(a.children) != set(b.children):
            d.differ()
        for k in set(a.children) & set(b.children):
            d.node(a.children[k], b.children[k])

    def parts(self, node: Node) -> list[tuple[str, Node]]:
        return [(f".{a}", c) for a, c in node.children.items()]


class CopyKind(Handler):
    """Anything no other kind takes: a deep copy, restored into the current object where its
    type allows (a set, a bytearray, a dict subclass keep their identity), else rebound."""

    kind = Kind.COPY

    def capture(self, cap: Capturer, obj: Any, depth: int) -> Node | None:
        if cap.dry:
            return Node(self.tag)
        if isinstance(obj, (set, bytearray)):
            return Node(self.tag, copy.copy(obj))
        try:
            return Node(self.tag, copy.deepcopy(obj))
        except Exception as exc:  # noqa: BLE001
            raise CannotSnapshot(f"{type(obj).__name__} cannot be copied: {exc}") from None

    def restore(self, r: Restorer, cur: Any, node: Node) -> Any:
        return _restore_copy(cur, node.value) if r.apply else None

    def compare(self, d: Comparison, a: Node, b: Node) -> None:
        d.tree(a.value, b.value)


# the order capture asks them in: the first that takes an object decides its kind
HANDLERS: tuple[Handler, ...] = (
    ValueKind(),
    RefKind(),
    TensorKind(),
    ModuleKind(),
    OptimizerKind(),
    DataLoaderKind(),
    GeneratorKind(),
    NdarrayKind(),
    NpGeneratorKind(),
    NpRandomStateKind(),
    RandomKind(),
    StatefulKind(),
    ListKind(),
    DequeKind(),
    TupleKind(),
    NamedTupleKind(),
    DictKind(),
    ObjectKind(),
    CopyKind(),  # takes anything
)
KINDS: dict[str, Handler] = {h.tag: h for h in HANDLERS}
UNSHARED = tuple(h for h in HANDLERS if not h.shared)
SHARED = tuple(h for h in HANDLERS if h.shared)
assert HANDLERS[: len(UNSHARED)] == UNSHARED, "unshared kinds are asked first"
UNKNOWN = Handler()

# builtin types whose kind follows from the type alone (their instances have no attributes of
# their own and cannot change their __class__): capture goes straight to the handler that the
# walk through HANDLERS would reach for them
EXACT: dict[type, Handler] = {
    **{t: KINDS[Kind.VALUE] for t in IMMUTABLE},
    list: KINDS[Kind.LIST],
    collections.deque: KINDS[Kind.DEQUE],
    tuple: KINDS[Kind.TUPLE],
    dict: KINDS[Kind.DICT],
}


def candidates(cls: type) -> tuple[Handler, ...]:
    """The shared handlers that may take an instance of `cls` whose `__class__` is `cls`, in
    order: those whose `requires()` rules it out are left out. A class test is trusted only
    where isinstance() means issubclass() of the type (no __instancecheck__ of its own)."""
    out = []
    for h in SHARED:
        required = h.requires()
        if (
            required is None
            or any(
                type(r).__instancecheck__ is not type.__instancecheck__
                or type(r).__subclasscheck__ is not type.__subclasscheck__
                for r in required
            )
            or issubclass(cls, required)
        ):
            out.append(h)
    return tuple(out)


def of(kind: str) -> Handler:
    """The handler of a node kind (for a kind this florc does not know, one that cannot
    restore it)."""
    return KINDS.get(kind, UNKNOWN)


def parts(node: Node) -> list[tuple[str, Node]]:
    """A node's children, each with the access segment that leads to it."""
    return of(node.kind).parts(node) if node.children else []


def _set_grad(t: Any, grad: Any) -> None:
    if grad is None:
        t.grad = None
    elif t.grad is not None and t.grad.shape == grad.shape:
        t.grad.copy_(grad)
    else:
        t.grad = grad.to(t.device)


def _load_module(module: Any, node: Node) -> None:
    state = module.state_dict(keep_vars=True)
    with lazy.torch().no_grad():
        for name, value in node.value.items():
            cur = state.get(name)
            if cur is not None and lazy.is_tensor(cur) and cur.shape == value.shape:
                cur.copy_(value)
            else:
                module.load_state_dict({name: value}, strict=False)
    grads, modes = node.extra
    for name, p in module.named_parameters():
        _set_grad(p, grads.get(name))
    for m, mode in zip(module.modules(), modes):
        m.training = mode


def _restore_copy(cur: Any, value: Any) -> Any:
    """A copied value, restored into the current object where its type allows (a set, a
    deque, a dict subclass keep their identity); otherwise the copy itself, rebound."""
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
