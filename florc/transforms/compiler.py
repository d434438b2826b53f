"""The compile pipeline: discover the project's modules, analyse, pick the main loop, instrument.

Passes, in order: parse and collect each file (imports, functions, loops, log statements:
modules.py) -> summarise effects over the whole project (effects.py, resolving calls with
resolve.py) -> find the main loop (mainloop.py) -> per loop its changeset, and per file the
values derived from clocks (clocks.py) and the nondeterminism warnings (nondeterminism.py) ->
instrument (instrument.py). The result is a CompileResult (florc/contract.py), plain data the
runtime consumes; the runtime never imports libcst. Replay aligns the compiled modules with the
recorded sources (align.py) before their trees are dropped.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from florc.contract import CompileResult, FileManifest, LoopManifest, framework_loop_id
from florc.errors import SourceError
from florc.project import is_project_file
from florc.transforms.clocks import ClockTaint, log_statement_shapes, project_taints
from florc.transforms.effects import Project, child_nodes, descendants, minimal
from florc.transforms.instrument import instrument, is_instrumented, loops_not_instrumented
from florc.transforms.mainloop import MainLoop, find_main_loop
from florc.transforms.modules import ModuleInfo, analyse_module, read_source
from florc.transforms.nondeterminism import find_nondeterminism
from florc.transforms.resolve import ProjectIndex
from florc.transforms.syntax import (
    RESERVED_PREFIX,
    dotted,
    is_block_part,
    names_in,
    parse_cst,
)


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


def resolve_import_file(root: Path, base_dir: Path, dotted_name: str, level: int) -> Iterator[Path]:
    """The files an import may load: those of every prefix of the dotted name (`a/b.py` or
    `a/b/__init__.py`, then `a.py` or `a/__init__.py`), looked up in base_dir and root for an
    absolute import (level 0), in base_dir for `from . import` (level 1), in its parent for
    `from .. import` (level 2), and so on."""
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
    for node in _small_statements(info.tree):
        if isinstance(node, cst.Import):
            for alias in node.names:
                name = ".".join(dotted(alias.name) or ())
                out.extend(resolve_import_file(root, info.path.parent, name, 0))
        elif isinstance(node, cst.ImportFrom):
            mod = ".".join(dotted(node.module) or ()) if node.module is not None else ""
            level = len(node.relative)
            out.extend(resolve_import_file(root, info.path.parent, mod, level))
            if not isinstance(node.names, cst.ImportStar):
                for alias in node.names:
                    if isinstance(alias.name, cst.Name):
                        sub = f"{mod}.{alias.name.value}" if mod else alias.name.value
                        out.extend(resolve_import_file(root, info.path.parent, sub, level))
    return out


def _small_statements(tree: cst.Module) -> Iterator[cst.BaseSmallStatement]:
    """Every simple statement (`import x`, `x = 1`), at any depth, without entering expressions."""
    stack: list[cst.CSTNode] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, cst.SimpleStatementLine):
            yield from node.body
            continue
        if isinstance(node, cst.SimpleStatementSuite):
            yield from node.body
            continue
        parts = [c for c in child_nodes(node) if is_block_part(c)]
        stack.extend(reversed(parts))


def _check_reserved(info: ModuleInfo) -> None:
    """A name of the user's that florc's generated code could clash with: a SourceError."""
    if RESERVED_PREFIX not in info.source or is_instrumented(info.source):
        return
    for node in descendants(info.tree):
        if isinstance(node, cst.Name) and node.value.startswith(RESERVED_PREFIX):
            line, col = info.position(node)
            raise SourceError(
                info.relpath,
                line,
                col,
                f"the name `{node.value}` is reserved for florc's generated code",
                "Rename it; florc's generated code uses names starting with __florc.",
            )


@dataclass
class Compiled:
    """A compile's result and the analysed modules it was made from (the script first). The
    modules hold syntax trees: keep them only as long as they are needed (align_modules and
    new_statement_after_main_loop take them), never while the script runs."""

    result: CompileResult
    modules: list[ModuleInfo]


def compile_project(
    script: Path, root: Path, known_names: dict[str, frozenset[str]] | None = None
) -> CompileResult:
    """Analyse and instrument the script and the project modules it imports.

    known_names: per relpath, identifiers of the recorded version (enables the rule that an
    assignment to a new name used only by log statements is itself a log statement).
    """
    return compile_modules(script, root, known_names).result


def compile_modules(
    script: Path,
    root: Path,
    known_names: dict[str, frozenset[str]] | None = None,
    sources: Mapping[str, str] | None = None,
) -> Compiled:
    """compile_project, with the analysed modules (for aligning them with a recorded version
    without analysing them again). sources: relpath -> text of files to compile instead of
    what is on disk (a recorded version with log statements placed in it)."""
    with paused_gc():
        return _compile_project(script.resolve(), root.resolve(), known_names, sources)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside: a compile builds few cycles but very many objects,
    and the collector's passes over them cost about a sixth of the compile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compile_project(
    script: Path,
    root: Path,
    known_names: dict[str, frozenset[str]] | None,
    sources: Mapping[str, str] | None = None,
) -> Compiled:
    modules = discover_modules(script, root, known_names, sources=sources)
    project = Project(modules)
    main = find_main_loop(project, modules[0])
    files: dict[str, FileManifest] = {}
    taints = project_taints(modules)
    for info in modules:
        files[info.relpath] = _file_manifest(project, info, taints[info.relpath])
    fw = main.framework
    result = CompileResult(
        script=modules[0].relpath,
        root=str(root),
        main_loop=(
            main.loop.loop_id
            if main.loop
            else framework_loop_id(fw.relpath, fw.framework)
            if fw is not None and main.rule == "framework"
            else None
        ),
        main_loop_reason=main.reason,
        main_loop_rule=main.rule,
        framework=dataclasses.asdict(fw) if fw is not None else None,
        files=files,
        warnings=[w for info in modules for w in find_nondeterminism(info)],
    )
    return Compiled(result, modules)


def find_script_main_loop(script: Path, root: Path, source: str | None = None) -> MainLoop:
    """The main-loop search alone (no effect analysis, no instrumenting): what the commit hook
    runs to tell whether a file is a training script. source: the script's text, if not the
    file's (a version from git)."""
    with paused_gc():
        modules = discover_modules(script.resolve(), root.resolve(), script_source=source)
        return find_main_loop(ProjectIndex(modules), modules[0])


def discover_modules(
    script: Path,
    root: Path,
    known_names: dict[str, frozenset[str]] | None = None,
    script_source: str | None = None,
    sources: Mapping[str, str] | None = None,
) -> list[ModuleInfo]:
    """The script and the project modules it imports (transitively), parsed and collected.
    script_source: the script's text, if not the file's; sources: relpath -> text for any
    file, if not the file's."""
    modules: list[ModuleInfo] = []
    seen: set[Path] = set()
    todo: list[tuple[Path, str]] = [(script, "__main__")]
    while todo:
        path, modname = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        relpath = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        if script_source is not None and path == script:
            source = script_source
        elif sources is not None and relpath in sources:
            source = sources[relpath]
        else:
            source = read_source(path, relpath)
        # a file the recorded run did not have: every name is new
        known = None if known_names is None else known_names.get(relpath, frozenset())
        info = analyse_module(source, path, relpath, modname, known)
        _check_reserved(info)
        modules.append(info)
        for f in _imported_files(info, root):
            if is_project_file(f, root) and f.resolve() not in seen:
                todo.append((f.resolve(), _import_name(f.resolve(), script, root)))
    return modules


def _file_manifest(project: Project, info: ModuleInfo, taint: ClockTaint) -> FileManifest:
    skipped = {lp.loop_id for lp in loops_not_instrumented(info)}
    loops: list[LoopManifest] = []
    read_lines = _names_read(info)
    for lp in info.loops:
        eff = project.loop_effects(info, lp.scope, lp.node)
        paths = minimal(eff.mutated)
        required = []
        end = info.end_line(lp.node)
        for p in paths:
            root = p[0]
            live = _read_outside(read_lines, root, lp.line, end)
            if len(p) == 1 and root in eff.bound and not live:
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
                required=sorted(required),
                iterated=sorted(_path_text(p) for p in minimal(eff.iterated)),
                unbounded=unbounded,
                instrumented=lp.loop_id not in skipped,
                left_out=taint.state_left_out(lp.scope, changeset),
            )
        )
    instrumented = instrument(info, {lp.loop_id: lp.changeset for lp in loops})
    shapes = log_statement_shapes(taint)
    return FileManifest(
        relpath=info.relpath,
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
    )


def _clock_fields(found: tuple[list[list[list[object]]], str] | None) -> dict[str, object]:
    """A log statement printing values derived from a clock or unseeded randomness: the shapes
    of its lines and the kind of the values the fidelity check leaves out."""
    if found is None:
        return {}
    shapes, kind = found
    return {"shapes": shapes, "left_out": kind}


def _names_read(info: ModuleInfo) -> dict[str, tuple[int, int]]:
    """name -> (first line, last line) of its Name nodes, for the liveness approximation."""
    out: dict[str, tuple[int, int]] = {}
    for node in descendants(info.tree):
        if isinstance(node, cst.Name):
            line, _ = info.position(node)
            first, last = out.get(node.value, (line, line))
            out[node.value] = (min(first, line), max(last, line))
    return out


def _read_outside(reads: dict[str, tuple[int, int]], name: str, start: int, end: int) -> bool:
    """Whether the name occurs before or after the loop (a back edge makes "before" live too)."""
    lines = reads.get(name)
    return lines is not None and (lines[0] < start or lines[1] > end)


def identifiers(source: str) -> frozenset[str]:
    """Every identifier in a source text (used as the recorded version's known names)."""
    try:
        tree = parse_cst(source)
    except Exception:
        return frozenset()
    return frozenset(names_in(tree))
