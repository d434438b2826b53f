"""Small LibCST helpers shared by the analyses: parsing with clear errors (once per text inside
shared_parses()), fast walkers in field or source order, names, pragmas, the name lists the
analyses consult."""

from __future__ import annotations

import ast
import builtins
import dataclasses
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import libcst as cst

from florc.errors import SourceError

BUILTIN_NAMES = frozenset(dir(builtins))

# Builtins that neither mutate their arguments nor change the program's variables. `print`,
# `open` and `input` are among them: what they change (a terminal, a file) lies outside the state
# a checkpoint holds, and a file object they return is a new value.
PURE_BUILTINS = frozenset(
    [
        "abs",
        "all",
        "any",
        "ascii",
        "bin",
        "bool",
        "bytearray",
        "bytes",
        "callable",
        "chr",
        "complex",
        "dict",
        "dir",
        "divmod",
        "enumerate",
        "filter",
        "float",
        "format",
        "frozenset",
        "getattr",
        "hasattr",
        "hash",
        "hex",
        "id",
        "int",
        "isinstance",
        "issubclass",
        "iter",
        "len",
        "list",
        "map",
        "max",
        "min",
        "oct",
        "ord",
        "pow",
        "print",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "slice",
        "sorted",
        "str",
        "sum",
        "tuple",
        "type",
        "zip",
        "super",
        "object",
        "property",
        "staticmethod",
        "classmethod",
        "open",
        "input",
    ]
)
# Builtins whose effects the analysis cannot bound.
UNBOUNDED_BUILTINS = frozenset(
    {"exec", "eval", "globals", "locals", "vars", "compile", "__import__"}
)

# Methods that only read their receiver and arguments (tensors, containers, strings).
PURE_METHODS = frozenset(
    [
        "item",
        "size",
        "numel",
        "dim",
        "detach",
        "cpu",
        "numpy",
        "tolist",
        "clone",
        "float",
        "double",
        "half",
        "int",
        "long",
        "bool",
        "parameters",
        "named_parameters",
        "buffers",
        "named_buffers",
        "children",
        "named_children",
        "modules",
        "named_modules",
        "state_dict",
        "keys",
        "values",
        "items",
        "get",
        "copy",
        "count",
        "index",
        "format",
        "join",
        "split",
        "strip",
        "lstrip",
        "rstrip",
        "lower",
        "upper",
        "startswith",
        "endswith",
        "replace",
        "encode",
        "decode",
        "argmax",
        "argmin",
        "max",
        "min",
        "sum",
        "mean",
        "std",
        "var",
        "norm",
        "abs",
        "sqrt",
        "exp",
        "log",
        "pow",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "view",
        "reshape",
        "flatten",
        "squeeze",
        "unsqueeze",
        "permute",
        "transpose",
        "contiguous",
        "is_contiguous",
        "type_as",
        "to_dense",
        "float_power",
        "softmax",
        "log_softmax",
        "sigmoid",
        "tanh",
        "relu",
        "topk",
        "sort",
        "all",
        "any",
        "isnan",
        "isinf",
        "isfinite",
        "nonzero",
        "element_size",
        "get_last_lr",
    ]
)

LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "critical", "exception"})
WRITER_METHODS = frozenset(
    [
        "add_scalar",
        "add_scalars",
        "add_histogram",
        "add_image",
        "add_images",
        "add_figure",
        "add_text",
        "add_graph",
        "add_embedding",
        "add_pr_curve",
        "add_hparams",
        "add_audio",
        "add_video",
        "add_mesh",
        "add_custom_scalars",
        "set_description",
        "set_postfix",
        "set_postfix_str",
        "log_metric",
        "log_metrics",
        "log_param",
        "log_params",
    ]
)

MAIN_LOOP_PRAGMA = re.compile(r"#\s*florc:\s*main-loop\b")
SKIP_PRAGMA = re.compile(r"#\s*florc:\s*skip\b")

RESERVED_PREFIX = "__florc"


def parse_trees(source: str, path: str) -> tuple[ast.Module, cst.Module]:
    """Python's and LibCST's trees of source; a syntax error becomes a SourceError with the
    user's position (Python's own, the most precise). Once per text inside shared_parses()."""
    shared = _shared
    if shared is not None and source in shared.trees and source in shared.syntax:
        return shared.syntax[source], shared.trees[source]
    try:
        # CPython's parser gives the most precise position
        syntax = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise SourceError(
            path,
            exc.lineno or 1,
            exc.offset or 1,
            f"syntax error: {exc.msg}",
            "florc needs a script that Python 3 can parse; fix the line and try again.",
        ) from None
    except ValueError as exc:  # null bytes
        raise SourceError(path, 1, 1, f"cannot parse: {exc}") from None
    try:
        tree = parse_cst(source)
    except cst.ParserSyntaxError as exc:
        message = str(exc.message).strip().splitlines()[0] if exc.message else "invalid syntax"
        raise SourceError(
            path,
            exc.raw_line,
            exc.raw_column + 1,
            f"syntax error: {message}",
            "florc needs a script that Python 3 can parse; fix the line and try again.",
        ) from None
    except Exception as exc:  # libcst raises a few other kinds for odd input
        raise SourceError(path, 1, 1, f"cannot parse: {exc}", "Is this a Python 3 file?") from None
    if shared is not None:
        shared.syntax[source] = syntax
    return syntax, tree


def parse_cst(source: str) -> cst.Module:
    """cst.parse_module(source), once per text inside a shared_parses() block."""
    shared = _shared
    if shared is None:
        return cst.parse_module(source)
    tree = shared.trees.get(source)
    if tree is None:
        tree = shared.trees[source] = cst.parse_module(source)
    return tree


@dataclass
class _Shared:
    syntax: dict[str, ast.Module] = dataclasses.field(default_factory=dict)  # text -> ast
    trees: dict[str, cst.Module] = dataclasses.field(default_factory=dict)  # text -> LibCST
    spans: dict[int, dict[int, tuple[int, int, int, int]]] = dataclasses.field(default_factory=dict)


_shared: _Shared | None = None


@contextmanager
def shared_parses() -> Iterator[None]:
    """Inside this block each source text is parsed (and its positions computed) once, however
    many times it is analysed: replay analyses the recorded and the edited version of each file
    several times. The trees are dropped at the end of the outermost block, so they do not stay
    in memory while the script runs."""
    global _shared
    outer = _shared
    if outer is None:
        _shared = _Shared()
    try:
        yield
    finally:
        if outer is None:
            _shared = None


def shared_spans(
    tree: cst.Module, compute: Callable[[cst.Module], dict[int, tuple[int, int, int, int]]]
) -> dict[int, tuple[int, int, int, int]]:
    """compute(tree), once per tree inside a shared_parses() block."""
    shared = _shared
    if shared is None:
        return compute(tree)
    spans = shared.spans.get(id(tree))
    if spans is None:
        spans = shared.spans[id(tree)] = compute(tree)
    return spans


# Fields that only hold whitespace, comments and punctuation: never walked.
_TOKEN_FIELDS = frozenset(
    {
        "lpar",
        "rpar",
        "leading_lines",
        "lines_after_decorators",
        "header",
        "footer",
        "comma",
        "semicolon",
        "equal",
        "colon",
        "dot",
        "relative",
        "operator",
        "first_colon",
        "second_colon",
    }
)
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def _code_fields(cls: type) -> tuple[str, ...]:
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if "whitespace" not in f.name and f.name not in _TOKEN_FIELDS
    )


def child_nodes(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The node's children that hold code, in field order (about source order), much faster than
    `node.children` or a CSTVisitor pass, which rebuild every node they pass through."""
    names = _CHILD_FIELDS.get(type(node))
    if names is None:
        names = _CHILD_FIELDS[type(node)] = _code_fields(type(node))
    return _values(node, names)


# type -> 1 (a node), 2 (a list or tuple), 0 (anything else): an isinstance test against
# libcst's abstract classes goes through ABCMeta and costs ten times a dictionary lookup
_KINDS: dict[type, int] = {}


def _kind(cls: type) -> int:
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _KINDS[cls] = (
            1 if issubclass(cls, cst.CSTNode) else 2 if issubclass(cls, (list, tuple)) else 0
        )
    return kind


def _values(node: cst.CSTNode, names: tuple[str, ...]) -> list[cst.CSTNode]:
    """The nodes held by these fields of node, in this order (sequences flattened)."""
    out: list[cst.CSTNode] = []
    kinds = _KINDS
    for name in names:
        value = getattr(node, name)
        kind = kinds.get(type(value))
        if kind is None:
            kind = _kind(type(value))
        if kind == 1:
            out.append(value)
        elif kind == 2:
            out.extend(v for v in value if _kind(type(v)) == 1)
    return out


# Nodes that hold statements (or are statements). Statements never sit inside expressions, so
# a pass over statements enters only these.
BLOCK_PARTS = (
    cst.BaseSuite,
    cst.BaseStatement,
    cst.Else,
    cst.ExceptHandler,
    cst.ExceptStarHandler,
    cst.Finally,
    cst.MatchCase,
)
_BLOCK_TYPES: dict[type, bool] = {}


def is_block_part(node: object) -> bool:
    """isinstance(node, BLOCK_PARTS), cached per type."""
    cls = type(node)
    found = _BLOCK_TYPES.get(cls)
    if found is None:
        found = _BLOCK_TYPES[cls] = issubclass(cls, BLOCK_PARTS)
    return found


def walk(node: cst.CSTNode, hooks: dict[str, Callable[[Any], bool | None]]) -> None:
    """Preorder walk calling hooks[type name](node); a hook returning False prunes the node."""
    _preorder_hooks(node, hooks, child_nodes)


def _preorder_hooks(
    node: cst.CSTNode,
    hooks: dict[str, Callable[[Any], bool | None]],
    children: Callable[[cst.CSTNode], list[cst.CSTNode]],
) -> None:
    stack = [node]
    while stack:
        cur = stack.pop()
        hook = hooks.get(type(cur).__name__)
        if hook is not None and hook(cur) is False:
            continue
        kids = children(cur)
        kids.reverse()
        stack.extend(kids)


def scope_qualname(scopes: list[tuple[str, str]], name: str | None = None) -> str:
    """The qualified name inside nested ("class"|"def", name) scopes: `f.<locals>.g`, `C.m`."""
    parts: list[str] = []
    for kind, n in scopes:
        parts.append(n)
        if kind == "def":
            parts.append("<locals>")
    if name is not None:
        parts.append(name)
    elif parts and parts[-1] == "<locals>":
        parts.pop()
    return ".".join(parts) if parts else "<module>"


def descendants(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Every code node under node (itself included), preorder."""
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        kids = child_nodes(cur)
        kids.reverse()
        stack.extend(kids)


# Fields whose order in the node's dataclass differs from their order in the source text, which
# is the order a CSTVisitor and `node.children` follow: `@decorator` comes before `def name`,
# `a if test else b` holds `test` first. Every other node type's fields are in source order.
# (tests/unit/test_compiler.py checks this table against libcst's own visiting order.)
_SOURCE_ORDER: dict[str, tuple[str, ...]] = {
    "Arg": ("star", "keyword", "value"),
    "ClassDef": ("decorators", "name", "type_parameters", "bases", "keywords", "body"),
    "CompFor": ("asynchronous", "target", "iter", "ifs", "inner_for_in"),
    "Dict": ("lbrace", "elements", "rbrace"),
    "DictComp": ("lbrace", "key", "value", "for_in", "rbrace"),
    "ExceptHandler": ("type", "name", "body"),
    "ExceptStarHandler": ("type", "name", "body"),
    "For": ("asynchronous", "target", "iter", "body", "orelse"),
    "FormattedString": ("start", "parts", "end"),
    "FunctionDef": (
        "decorators",
        "asynchronous",
        "name",
        "type_parameters",
        "params",
        "returns",
        "body",
    ),
    "IfExp": ("body", "test", "orelse"),
    "IndentedBlock": ("indent", "body"),
    "Index": ("star", "value"),
    "List": ("lbracket", "elements", "rbracket"),
    "ListComp": ("lbracket", "elt", "for_in", "rbracket"),
    "Match": ("subject", "indent", "cases"),
    "MatchCase": ("pattern", "guard", "body"),
    "MatchList": ("lbracket", "patterns", "rbracket"),
    "MatchMapping": ("lbrace", "elements", "rest", "trailing_comma", "rbrace"),
    "Param": ("star", "name", "annotation", "default"),
    "Parameters": (
        "posonly_params",
        "posonly_ind",
        "params",
        "star_arg",
        "kwonly_params",
        "star_kwarg",
    ),
    "Set": ("lbrace", "elements", "rbrace"),
    "SetComp": ("lbrace", "elt", "for_in", "rbrace"),
    "StarredDictComp": ("lbrace", "value", "for_in", "rbrace"),
    "Subscript": ("value", "lbracket", "slice", "rbracket"),
    "TemplatedString": ("start", "parts", "end"),
    "TypeAlias": ("name", "type_parameters", "value"),
    "TypeParameters": ("lbracket", "params", "rbracket"),
    "With": ("asynchronous", "items", "body"),
}
_SOURCE_FIELDS: dict[type, tuple[str, ...]] = {}


def source_fields(cls: type) -> tuple[str, ...]:
    """The code-holding fields of a node type (as child_nodes walks them), in source order."""
    names = _SOURCE_FIELDS.get(cls)
    if names is None:
        fields = _code_fields(cls)
        order = _SOURCE_ORDER.get(cls.__name__, ())
        names = tuple(n for n in order if n in fields) + tuple(n for n in fields if n not in order)
        _SOURCE_FIELDS[cls] = names
    return names


def source_children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The node's code children in source order: those of `node.children` that can hold code,
    in the same order, without the cost of `node.children` (which rebuilds the node)."""
    return _values(node, _SOURCE_FIELDS.get(type(node)) or source_fields(type(node)))


def source_walk(node: cst.CSTNode, hooks: dict[str, Callable[[Any], bool | None]]) -> None:
    """Preorder walk in source order (the order of a CSTVisitor) calling hooks[type name](node);
    a hook returning False prunes the node."""
    _preorder_hooks(node, hooks, source_children)


def source_preorder(
    node: cst.CSTNode, prune: tuple[type, ...] = (), keep_root: bool = False
) -> Iterator[cst.CSTNode]:
    """Every code node under node (itself included) in source order; nodes of the `prune`
    types are yielded but not entered (the root is entered anyway when keep_root)."""
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        if prune and isinstance(cur, prune) and not (keep_root and cur is node):
            continue
        kids = source_children(cur)
        kids.reverse()
        stack.extend(kids)


def dotted(expr: cst.BaseExpression) -> tuple[str, ...] | None:
    """`a.b.c` -> ("a", "b", "c"); None when the expression is not a plain name chain."""
    parts: list[str] = []
    while isinstance(expr, cst.Attribute):
        parts.append(expr.attr.value)
        expr = expr.value
    if isinstance(expr, cst.Name):
        parts.append(expr.value)
        return tuple(reversed(parts))
    return None


def chain_base(expr: cst.BaseExpression) -> cst.BaseExpression:
    """The innermost value under attribute, subscript and call layers."""
    while True:
        if isinstance(expr, (cst.Attribute, cst.Subscript)):
            expr = expr.value
        elif isinstance(expr, cst.Call):
            expr = expr.func
        else:
            return expr


def names_in(node: cst.CSTNode) -> Iterator[str]:
    """Every identifier read or written anywhere under node."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, cst.Name):
            yield cur.value
        stack.extend(child_nodes(cur))


def has_pragma(node: cst.CSTNode, pattern: re.Pattern[str]) -> bool:
    comments: list[str] = []
    for line in getattr(node, "leading_lines", ()):
        if line.comment is not None:
            comments.append(line.comment.value)
    body = getattr(node, "body", None)
    header = getattr(body, "header", None)
    if header is not None and header.comment is not None:
        comments.append(header.comment.value)
    return any(pattern.search(c) for c in comments)
