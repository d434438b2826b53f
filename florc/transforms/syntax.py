"""Small LibCST helpers shared by the analyses: parsing with clear errors, names, positions."""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from florc.errors import SourceError

BUILTIN_NAMES = frozenset(dir(builtins))

# Builtins that neither mutate their arguments nor reach user state.
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
        "numel",
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


@dataclass(frozen=True)
class Position:
    line: int
    col: int


def parse(source: str, path: str) -> cst.Module:
    """Parse source, turning a syntax error into a SourceError with the user's position."""
    try:
        ast.parse(source, filename=path)  # CPython's parser gives the most precise position
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
        return cst.parse_module(source)
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
        stack.extend(cur.children)


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
