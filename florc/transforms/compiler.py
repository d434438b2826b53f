"""The compile pipeline: discover the project's modules, analyse, pick the main loop, instrument.

Passes, in order: parse (each file) -> collect (imports, functions, loops, log statements) ->
summarise effects (whole project) -> find the main loop -> changesets per loop -> instrument.
The result is plain data (a manifest) that the runtime consumes; the runtime never imports libcst.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import libcst as cst

from florc.errors import SourceError
from florc.transforms.clocks import ClockTaint, log_statement_shapes
from florc.transforms.effects import Project, function_key
from florc.transforms.instrument import instrument, loops_not_instrumented
from florc.transforms.manifest import CompileResult, FileManifest, LoopManifest, is_project_file
from florc.transforms.modules import LoopInfo, ModuleInfo, analyse_module, read_source
from florc.transforms.nondeterminism import find_nondeterminism
from florc.transforms.syntax import RESERVED_PREFIX, dotted, names_in


def _path_text(p: tuple[str, ...]) -> str:
    return ".".join(p)


def module_name_for(path: Path, root: Path) -> str:
    """The import name of a project file, relative to the script's folder (sys.path[0]) or root."""
    rel = (path.relative_to(root) if path.is_relative_to(root) else Path(path.name)).with_suffix("")
    parts = list(rel.parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_name(path: Path, script: Path, root: Path) -> str:
    base = script.parent if path.is_relative_to(script.parent) else root
    return module_name_for(path, base)


def _resolve_import_file(
    root: Path, base_dir: Path, dotted_name: str, level: int
) -> Iterator[Path]:
    parts = dotted_name.split(".") if dotted_name else []
    starts = [base_dir] if level == 0 else [base_dir.parents[level - 2] if level > 1 else base_dir]
    if level == 0:
        starts.append(root)
    for start in starts:
        for n in range(len(parts), 0, -1):
            cand = start.joinpath(*parts[:n])
            for f in (cand.with_suffix(".py"), cand / "__init__.py"):
                if f.is_file():
                    yield f
                    break


def _imported_files(info: ModuleInfo, root: Path) -> list[Path]:
    out: list[Path] = []

    class V(cst.CSTVisitor):
        def visit_Import(self, node: cst.Import) -> None:
            for alias in node.names:
                name = ".".join(dotted(alias.name) or ())  # type: ignore[arg-type]
                out.extend(_resolve_import_file(root, info.path.parent, name, 0))

        def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
            mod = ".".join(dotted(node.module) or ()) if node.module is not None else ""  # type: ignore[arg-type]
            level = len(node.relative)
            out.extend(_resolve_import_file(root, info.path.parent, mod, level))
            if not isinstance(node.names, cst.ImportStar):
                for alias in node.names:
                    if isinstance(alias.name, cst.Name):
                        sub = f"{mod}.{alias.name.value}" if mod else alias.name.value
                        out.extend(_resolve_import_file(root, info.path.parent, sub, level))

    info.tree.visit(V())
    return out


def _check_reserved(info: ModuleInfo) -> None:
    class V(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            if node.value.startswith(RESERVED_PREFIX):
                line, col = info.position(node)
                raise SourceError(
                    info.relpath,
                    line,
                    col,
                    f"the name `{node.value}` is reserved for florc's generated code",
                    "Rename it; florc's generated code uses names starting with __florc.",
                )

    from florc.transforms.instrument import is_instrumented

    if not is_instrumented(info.source):
        info.tree.visit(V())


def compile_project(
    script: Path,
    root: Path,
    known_names: dict[str, frozenset[str]] | None = None,
    extra_files: list[Path] | None = None,
) -> CompileResult:
    """Analyse and instrument the script and the project modules it imports.

    known_names: per relpath, identifiers of the recorded version (enables the rule that an
    assignment to a new name used only by log statements is itself a log statement).
    """
    script = script.resolve()
    root = root.resolve()
    modules: list[ModuleInfo] = []
    seen: set[Path] = set()
    todo: list[tuple[Path, str]] = [(script, "__main__")]
    for extra in extra_files or []:
        todo.append((extra.resolve(), _import_name(extra.resolve(), script, root)))
    while todo:
        path, modname = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        relpath = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        source = read_source(path, relpath)
        known = (known_names or {}).get(relpath) if known_names is not None else None
        if known_names is not None and known is None:
            known = frozenset()  # a file the recorded run did not have: every name is new
        info = analyse_module(source, path, relpath, modname, known)
        _check_reserved(info)
        modules.append(info)
        for f in _imported_files(info, root):
            if is_project_file(f, root) and f.resolve() not in seen:
                todo.append((f.resolve(), _import_name(f.resolve(), script, root)))
    project = Project(modules)
    main, reason = find_main_loop(project, modules[0])
    files: dict[str, FileManifest] = {}
    for info in modules:
        files[info.relpath] = _file_manifest(project, info)
    return CompileResult(
        script=modules[0].relpath,
        root=str(root),
        main_loop=main.loop_id if main else None,
        main_loop_reason=reason,
        files=files,
        warnings=[w for info in modules for w in find_nondeterminism(info)],
    )


def _file_manifest(project: Project, info: ModuleInfo) -> FileManifest:
    skipped = {lp.loop_id for lp in loops_not_instrumented(info)}
    loops: list[LoopManifest] = []
    read_elsewhere = _names_read(info)
    taint = ClockTaint(info)
    for lp in info.loops:
        eff = project.loop_effects(info, lp.scope, lp.node)
        paths = _minimal(eff.mutated)
        required = []
        for p in paths:
            root = p[0]
            end = info.end_line(lp.node)
            if (
                root in eff.bound
                and len(p) == 1
                and not _read_outside(read_elsewhere, root, lp.line, end)
            ):
                continue
            required.append(_path_text(p))
        unbounded = [str(u) for u in eff.unbounded]
        if lp.skip_pragma:
            unbounded.append(f"{info.relpath}:{lp.line}:{lp.col}: marked `# florc: skip`")
        changeset = sorted(_path_text(p) for p in paths)
        loops.append(
            LoopManifest(
                loop_id=lp.loop_id,
                relpath=info.relpath,
                line=lp.line,
                col=lp.col,
                kind=lp.kind,
                scope=lp.scope,
                parent_loop=lp.parent_loop,
                changeset=changeset,
                bound=sorted(eff.bound),
                required=sorted(required),
                iterated=sorted(_path_text(p) for p in _minimal(eff.iterated)),
                unbounded=unbounded,
                callees=sorted(eff.callees),
                log_statements=[
                    ls.code for ls in info.log_statements if _inside(info, ls.node, lp.node)
                ],
                instrumented=lp.loop_id not in skipped,
                left_out=taint.state_left_out(lp.scope, changeset),
            )
        )
    functions = {
        q: [ls.code for ls in info.log_statements if _inside(info, ls.node, fn.node)]
        for q, fn in info.functions.items()
    }
    instrumented = instrument(info)
    shapes = log_statement_shapes(taint)
    return FileManifest(
        relpath=info.relpath,
        module_name=info.module_name,
        path=str(info.path),
        source=info.source,
        sha256=hashlib.sha256(info.source.encode()).hexdigest(),
        instrumented=instrumented,
        loops=loops,
        log_statements=[
            {
                "line": ls.line,
                "col": ls.col,
                "end_line": ls.end_line,
                "scope": ls.scope,
                "loop": ls.loop_id,
                "code": ls.code,
                **_clock_fields(shapes.get(id(ls.node))),
            }
            for ls in info.log_statements
        ],
        functions=functions,
    )


def _clock_fields(found: tuple[list[list[list[object]]], str] | None) -> dict[str, object]:
    """A log statement printing values derived from a clock or unseeded randomness: the shapes
    of its lines and the kind of the values the fidelity check leaves out."""
    if found is None:
        return {}
    shapes, kind = found
    return {"shapes": shapes, "left_out": kind}


def _inside(info: ModuleInfo, inner: cst.CSTNode, outer: cst.CSTNode) -> bool:
    a, b = info.positions.get(inner), info.positions.get(outer)
    if a is None or b is None:
        return False
    return (b.start.line, b.start.column) <= (a.start.line, a.start.column) and (  # type: ignore[attr-defined]
        a.end.line,
        a.end.column,
    ) <= (b.end.line, b.end.column)  # type: ignore[attr-defined]


def _names_read(info: ModuleInfo) -> list[tuple[str, int, int]]:
    """(name, line, col) of every Name node, for the liveness approximation."""
    out: list[tuple[str, int, int]] = []

    class V(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            line, col = info.position(node)
            out.append((node.value, line, col))

    info.tree.visit(V())
    return out


def _read_outside(reads: list[tuple[str, int, int]], name: str, start: int, end: int) -> bool:
    """Whether the name occurs before or after the loop (a back edge makes "before" live too)."""
    return any(n == name and (line < start or line > end) for n, line, _ in reads)


def _minimal(paths: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """Drop paths covered by a shorter prefix (restoring `self` restores `self.step`)."""
    out = set()
    for p in paths:
        if not any(q != p and p[: len(q)] == q for q in paths):
            out.add(p)
    return out


def find_main_loop(project: Project, script: ModuleInfo) -> tuple[LoopInfo | None, str]:
    for m in project.modules.values():
        for lp in m.loops:
            if lp.main_pragma:
                return lp, "marked `# florc: main-loop`"
    trains: dict[str, bool] = {}

    def function_trains(key: str, stack: frozenset[str]) -> bool:
        if key in trains:
            return trains[key]
        if key in stack:
            return False
        module, fn = project.functions[key]
        result = _region_trains(module, fn.qualname, fn.node.body, stack | {key})
        trains[key] = result
        return result

    def _region_trains(
        module: ModuleInfo, scope: str, node: cst.CSTNode, stack: frozenset[str]
    ) -> bool:
        for lp in module.loops:
            if _inside(module, lp.node, node) and lp.node is not node:
                return True
        for call in _calls(node):
            chain = dotted(call.func)
            if chain and chain[-1] in ("step", "backward") and len(chain) >= 2:
                return True
            for key in _call_targets(project, module, scope, call):
                if function_trains(key, stack):
                    return True
        return False

    visited: set[str] = set()

    def search(module: ModuleInfo, scope: str, stmts: list[cst.CSTNode]) -> LoopInfo | None:
        for stmt in stmts:
            for node in _preorder(stmt):
                if isinstance(node, (cst.For, cst.While)):
                    lp = module.loop_by_node(node)
                    if lp is not None and _region_trains(module, scope, node, frozenset()):
                        return lp
                if isinstance(node, cst.Call):
                    for key in _call_targets(project, module, scope, node):
                        if key in visited:
                            continue
                        visited.add(key)
                        m2, fn = project.functions[key]
                        found = search(m2, fn.qualname, list(fn.node.body.body))
                        if found is not None:
                            return found
        return None

    found = search(script, "<module>", list(script.tree.body))
    if found is not None:
        return found, "outermost loop that reaches a nested loop or an optimizer step"
    return None, "no loop reaches a nested loop or an optimizer step; mark one `# florc: main-loop`"


def _preorder(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Nodes in source order; does not enter function or class bodies or loops (returned whole)."""
    yield node
    if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda, cst.For, cst.While)):
        if isinstance(node, (cst.For, cst.While)):
            return
        return
    for child in node.children:
        yield from _preorder(child)


def _calls(node: cst.CSTNode) -> Iterator[cst.Call]:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, cst.Call):
            yield cur
        if isinstance(cur, (cst.FunctionDef, cst.ClassDef, cst.Lambda)) and cur is not node:
            continue
        stack.extend(cur.children)


def _call_targets(project: Project, module: ModuleInfo, scope: str, call: cst.Call) -> list[str]:
    func = call.func
    if isinstance(func, cst.Name):
        return project.resolve_name(module, scope, func.value)
    if isinstance(func, cst.Attribute):
        chain = dotted(func.value)
        if chain and len(chain) == 1 and chain[0] in module.imports:
            other, attr = project.module_for_import(module, module.imports[chain[0]])
            if other is not None and attr is None:
                name = func.attr.value
                if name in other.functions:
                    return [function_key(other, name)]
                return project._class_init(other, name)
            if other is None:
                return []
        return list(project.by_method_name.get(func.attr.value, []))
    return []


def identifiers(source: str) -> frozenset[str]:
    """Every identifier in a source text (used as the recorded version's known names)."""
    try:
        tree = cst.parse_module(source)
    except Exception:
        return frozenset()
    return frozenset(names_in(tree))
