"""Which statements are log statements.

A log statement only reports values: `print(...)`, `logging`/logger calls, `florc.log(...)`,
writer calls such as `SummaryWriter.add_scalar`, an `if` or `for` whose body holds only log
statements, and (when the recorded version is known) an assignment to a new name that only log
statements read. Replay treats adding or removing these as faithful; anything else is a change
to training.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import libcst as cst

from florc.transforms.syntax import LOG_METHODS, WRITER_METHODS, dotted, names_in, walk


@dataclass(frozen=True)
class Example:
    """A snippet the rules are tested on (tests/unit/test_rules.py). The statement it is about is
    the one on the line marked `# <-`, or else its last top-level statement. recorded: the
    recorded version's source, for the rule about new names (None: at record time, when no
    assignment is a log statement)."""

    code: str
    recorded: str | None = None


EXAMPLES_LOG = [
    Example("print(f'epoch {epoch} loss {loss.item():.4f}')"),
    Example("logging.info('epoch %d', epoch)"),
    Example("logger.warning('loss is nan')"),
    Example("self.log.debug(loss)"),
    Example("florc.log('loss', loss.item())"),
    Example("writer.add_scalar('loss', loss.item(), step)"),
    Example("pbar.set_postfix(loss=loss.item())"),
    Example("wandb.log({'loss': loss.item()})"),
    Example("mlflow.log_metric('loss', loss.item())"),
    Example("print(epoch); print(loss)"),
    Example("if step % 100 == 0:\n    print(step, loss.item())"),
    Example("if val < best:\n    print('best', val)\nelif val > 2 * best:\n    print('worse')"),
    Example("if verbose:\n    pass\n    print(loss)"),
    Example("for name, p in model.named_parameters():\n    print(name, p.norm().item())"),
    # an assignment to a name the recorded version did not have, read only by log statements
    Example("norm = w.norm().item()  # <-\nprint(norm)", recorded="w = 1\n"),
    Example("a = loss.item()  # <-\nb = a * 2\nprint(b)", recorded="loss = 1\n"),
]

EXAMPLES_NOT_LOG = [
    Example("loss.backward()"),
    Example("opt.step(); print(loss)"),  # a line is a log statement only as a whole
    Example("log(x)"),  # a function named log: math, not logging
    Example("np.log(x)"),
    Example("model.info()"),  # `info` on something that is not a logger
    Example("writer.flush()"),  # not a writer method that reports a value
    Example("add_scalar('loss', 1.0)"),  # a writer method needs its writer
    Example("if step % 100 == 0:\n    print(step)\n    lr *= 0.5"),
    Example("if verbose:\n    print(loss)\nelse:\n    lr = 0.1"),
    Example("if debug:\n    pass"),
    Example("for b in loader:\n    print(b)\nelse:\n    print('done')"),
    Example("while step < 10:\n    print(step)"),  # a while loop's test may change state
    Example("for epoch in range(3):  # <-\n    print(epoch)\n    opt.step()"),
    Example("norm = w.norm().item()"),  # at record time no assignment is a log statement
    Example("norm = w.norm().item()", recorded="norm = 0\n"),  # the recorded version has it
    # training reads the new name
    Example("lr = 0.1  # <-\nopt = SGD(params, lr=lr)", recorded="params = opt = None\n"),
]


def is_log_call(call: cst.Call) -> bool:
    return is_log_chain(dotted(call.func))


def is_log_chain(chain: tuple[str, ...] | None) -> bool:
    """Whether a call of this dotted name is a log call (`print`, `logger.info`, ...)."""
    if chain is None:
        return False
    if chain == ("print",):
        return True
    if len(chain) >= 2 and chain[-2:] == ("florc", "log"):
        return True
    method = chain[-1]
    if method in WRITER_METHODS and len(chain) >= 2:
        return True
    if len(chain) >= 2 and chain[0] in ("wandb", "mlflow") and method.startswith("log"):
        return True
    if method in LOG_METHODS or method == "log":
        receiver = chain[-2].lower() if len(chain) >= 2 else ""
        return "log" in receiver
    return False


def _is_log_expr_statement(stmt: cst.BaseSmallStatement) -> bool:
    return (
        isinstance(stmt, cst.Expr) and isinstance(stmt.value, cst.Call) and is_log_call(stmt.value)
    )


def _assigned_names(stmt: cst.BaseSmallStatement) -> list[str] | None:
    """Plain names an assignment binds, or None if it binds anything else."""
    if isinstance(stmt, cst.Assign):
        targets = [t.target for t in stmt.targets]
    elif isinstance(stmt, cst.AnnAssign) and stmt.value is not None:
        targets = [stmt.target]
    else:
        return None
    out: list[str] = []

    def walk(t: cst.BaseExpression) -> bool:
        if isinstance(t, cst.Name):
            out.append(t.value)
            return True
        if isinstance(t, (cst.Tuple, cst.List)):
            return all(walk(e.value) for e in t.elements)
        return False

    return out if all(walk(t) for t in targets) else None


class LogStatementFinder:
    """Finds log statements in a module.

    `known_names` is the set of identifiers of the recorded version; a name absent from it is
    new, and an assignment binding only new names that only log statements read is a log
    statement too. Without a recorded version (at record time) no assignment qualifies.
    """

    def __init__(self, module: cst.Module, known_names: frozenset[str] | None) -> None:
        self.module = module
        self.known_names = known_names
        self.log_assign_names: set[str] = set()
        if known_names is not None:
            self._find_log_assignments()

    def is_log_statement(self, stmt: cst.CSTNode) -> bool:
        if isinstance(stmt, cst.SimpleStatementLine):
            return bool(stmt.body) and all(self._is_log_small(s) for s in stmt.body)
        if isinstance(stmt, cst.If):
            if not self._block_is_log(stmt.body.body):
                return False
            orelse = stmt.orelse
            if orelse is None:
                return True
            if isinstance(orelse, cst.If):
                return self.is_log_statement(orelse)
            return self._block_is_log(orelse.body.body)
        if isinstance(stmt, cst.For):
            # Binding the loop variable is the loop's only effect beyond its log statements.
            return stmt.orelse is None and self._block_is_log(stmt.body.body)
        return False

    def _is_log_small(self, stmt: cst.BaseSmallStatement) -> bool:
        if _is_log_expr_statement(stmt):
            return True
        if isinstance(stmt, cst.Pass):
            return False
        names = _assigned_names(stmt)
        if not names:
            return False
        return all(n in self.log_assign_names for n in names)

    def _block_is_log(self, body: Iterable[cst.CSTNode]) -> bool:
        stmts = list(body)
        return (
            bool(stmts)
            and all(
                self.is_log_statement(s)
                or (isinstance(s, cst.SimpleStatementLine) and _only_pass(s))
                for s in stmts
            )
            and not all(isinstance(s, cst.SimpleStatementLine) and _only_pass(s) for s in stmts)
        )

    def _find_log_assignments(self) -> None:
        """Fixpoint: new names whose every read is in a log statement or another such assignment."""
        assert self.known_names is not None
        assignments: list[tuple[cst.BaseSmallStatement, list[str]]] = []
        found: list[cst.BaseSmallStatement] = []
        walk(self.module, {"Assign": found.append, "AnnAssign": found.append})
        for stmt in found:
            names = _assigned_names(stmt)
            if names and not (set(names) & self.known_names):
                assignments.append((stmt, names))
        candidates = {n for _, names in assignments for n in names}
        while True:
            self.log_assign_names = set(candidates)
            reads = _ReadsOutsideLogs(self)
            walk(self.module, reads.hooks)
            bad = candidates & reads.names
            if not bad:
                return
            candidates -= bad


def _only_pass(stmt: cst.SimpleStatementLine) -> bool:
    return all(isinstance(s, cst.Pass) for s in stmt.body)


class _ReadsOutsideLogs:
    """Names read by statements that are not log statements (hooks for `walk`: a hook returning
    False does not enter the node)."""

    def __init__(self, finder: LogStatementFinder) -> None:
        self.finder = finder
        self.names: set[str] = set()
        self.hooks = {
            name[6:]: getattr(self, name) for name in dir(self) if name.startswith("visit_")
        }

    def _skip(self, node: cst.CSTNode) -> bool:
        return self.finder.is_log_statement(node)

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        if self._skip(node):
            return False
        for small in node.body:
            names = _assigned_names(small)
            if names and all(n in self.finder.log_assign_names for n in names):
                continue
            if isinstance(small, (cst.Assign, cst.AnnAssign)):
                value = small.value
                if value is not None:
                    self.names.update(names_in(value))
                targets = (
                    [t.target for t in small.targets]
                    if isinstance(small, cst.Assign)
                    else [small.target]
                )
                for t in targets:
                    if not isinstance(t, cst.Name):
                        self.names.update(names_in(t))
            else:
                self.names.update(names_in(small))
        return False

    def visit_If(self, node: cst.If) -> bool:
        if self._skip(node):
            return False
        self.names.update(names_in(node.test))
        return True

    def visit_For(self, node: cst.For) -> bool:
        if self._skip(node):
            return False
        self.names.update(names_in(node.iter))
        return True

    def visit_While(self, node: cst.While) -> bool:
        self.names.update(names_in(node.test))
        return True

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        for d in node.decorators:
            self.names.update(names_in(d))
        return True

    def visit_With(self, node: cst.With) -> bool:
        for item in node.items:
            self.names.update(names_in(item.item))
        return True

    def visit_Return(self, node: cst.Return) -> bool:
        if node.value is not None:
            self.names.update(names_in(node.value))
        return False
