"""The primer: florc over public training scripts, as a new user would run it.

For each script of `primer/manifest.toml` it gets the repository at the pinned commit (from a
local mirror folder named by FLORC_PRIMER_MIRROR, else `git clone`), writes the files the script
needs into a fresh project folder with its own `git init`, prepares the data offline, and then:

1. plain run of the script (with the manifest's setup edits only): its time and output;
2. plain run of each edited copy (one per level: epoch, batch, after-loop): the truth;
3. the compile alone, in a subprocess: seconds and peak memory beyond the interpreter's baseline;
4. `florc instrument --report`;
5. `florc record` (the default budget, then `--checkpoint-all`); the recorded output must equal
   the plain run's (after masking the wall-clock figures the manifest names);
6. per level: the edit applied to a copy of the recorded project, `florc replay --epochs SPEC`,
   and its output compared line for line with the truth's hindsight lines for those epochs.

Results go to primer/results.json and docs/PRIMER.md. Usage:

    python primer/run.py [--only NAME ...] [--keep] [--jobs N] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PRIMER = Path(__file__).resolve().parent
REPO = PRIMER.parent
MANIFEST = PRIMER / "manifest.toml"
LEVELS = ("epoch", "batch", "after")
PREFIX = "HINDSIGHT "
MIRROR_ENV = "FLORC_PRIMER_MIRROR"
REQUIRED = ("name", "repo", "commit", "files", "shape", "command", "epochs")


# --------------------------------------------------------------------------------------------
# manifest and edits (pure)


class ManifestError(Exception):
    pass


@dataclass
class Edit:
    """Lines added to (or replacing) a line of a project file.

    where: "after" / "before" an anchor line, "replace" it, or "end" of the file. The anchor is
    compared with each line stripped of surrounding whitespace and must match exactly one line.
    The added lines get the anchor's indentation, plus any they carry themselves.
    """

    file: str
    where: str
    anchor: str
    lines: list[str]

    def apply_text(self, text: str) -> str:
        src = text.splitlines(keepends=True)
        if src and not src[-1].endswith("\n"):
            src[-1] += "\n"
        if self.where == "end":
            return "".join(src) + "".join(f"{line}\n" for line in self.lines)
        hits = [i for i, line in enumerate(src) if line.strip() == self.anchor]
        if len(hits) != 1:
            raise ManifestError(f"{self.file}: anchor {self.anchor!r} found {len(hits)} times")
        i = hits[0]
        indent = src[i][: len(src[i]) - len(src[i].lstrip())]
        new = [f"{indent}{line}\n" if line.strip() else "\n" for line in self.lines]
        if self.where == "after":
            src[i + 1 : i + 1] = new
        elif self.where == "before":
            src[i:i] = new
        else:
            src[i : i + 1] = new
        return "".join(src)

    def apply(self, project: Path) -> None:
        path = project / self.file
        path.write_text(self.apply_text(path.read_text()))


def _edit(raw: dict, default_file: str, where_ctx: str) -> Edit:
    kinds = [k for k in ("after", "before", "replace") if k in raw]
    at_end = raw.get("at_end", False)
    if len(kinds) + bool(at_end) != 1:
        raise ManifestError(f"{where_ctx}: an edit needs one of after/before/replace/at_end")
    lines = raw.get("lines")
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise ManifestError(f"{where_ctx}: `lines` must be a list of strings")
    if at_end:
        return Edit(raw.get("file", default_file), "end", "", lines)
    return Edit(raw.get("file", default_file), kinds[0], raw[kinds[0]].strip(), lines)


@dataclass
class Script:
    name: str
    repo: str
    commit: str
    files: list[str]
    shape: str
    command: list[str]  # the script and its arguments, run with the interpreter in `cwd`
    epochs: str
    cwd: str = "."
    prepare: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    volatile: list[str] = field(default_factory=list)
    setup: list[Edit] = field(default_factory=list)
    hindsight: dict[str, list[Edit]] = field(default_factory=dict)
    notes: str = ""

    @property
    def owner_name(self) -> str:
        m = re.match(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", self.repo)
        if not m:
            raise ManifestError(f"{self.name}: repo {self.repo!r} is not a GitHub URL")
        return f"{m.group(1)}/{m.group(2)}"

    @property
    def script_file(self) -> str:
        """The script's path from the project root."""
        return os.path.normpath(os.path.join(self.cwd, self.command[0]))


def parse_manifest(text: str) -> list[Script]:
    data = tomllib.loads(text)
    scripts = []
    for i, raw in enumerate(data.get("script", [])):
        ctx = f"script #{i + 1} ({raw.get('name', '?')})"
        missing = [k for k in REQUIRED if not raw.get(k)]
        if missing:
            raise ManifestError(f"{ctx}: missing {', '.join(missing)}")
        if not re.fullmatch(r"[0-9a-f]{40}", raw["commit"]):
            raise ManifestError(f"{ctx}: commit must be a full sha")
        command = raw["command"]
        if isinstance(command, str):
            command = command.split()
        s = Script(
            name=raw["name"],
            repo=raw["repo"],
            commit=raw["commit"],
            files=list(raw["files"]),
            shape=raw["shape"],
            command=list(command),
            epochs=str(raw["epochs"]),
            cwd=raw.get("cwd", "."),
            prepare=list(raw.get("prepare", [])),
            env={k: str(v) for k, v in raw.get("env", {}).items()},
            volatile=list(raw.get("volatile", [])),
            notes=raw.get("notes", "").strip(),
        )
        default_file = s.script_file
        s.setup = [_edit(e, default_file, f"{ctx} setup") for e in raw.get("setup", [])]
        hs = raw.get("hindsight", {})
        for level in LEVELS:
            edits = hs.get(level)
            if not edits:
                raise ManifestError(f"{ctx}: no hindsight edits at level {level!r}")
            s.hindsight[level] = [_edit(e, default_file, f"{ctx} {level}") for e in edits]
            for e in s.hindsight[level]:
                if not any(PREFIX.strip() in line for line in e.lines):
                    raise ManifestError(f"{ctx} {level}: the added lines print no {PREFIX!r}")
        epochs_of(s.epochs)  # validates
        _ = s.owner_name  # validates the URL
        scripts.append(s)
    names = [s.name for s in scripts]
    if len(set(names)) != len(names):
        raise ManifestError("script names must be unique")
    return scripts


def load_manifest(path: Path = MANIFEST) -> list[Script]:
    return parse_manifest(path.read_text())


def epochs_of(spec: str) -> set[int]:
    """`5-9`, `3`, `1,4,7-9` as a set of epochs."""
    out: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", part)
        if not m:
            raise ManifestError(f"epochs {spec!r}: expected e.g. 5-9, 3 or 1,4,7-9")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        out.update(range(lo, hi + 1))
    return out


_EPOCH = re.compile(r"\be=(-?\d+)\b")


def hindsight_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(PREFIX)]


def expected_for(lines: list[str], epochs: set[int]) -> list[str]:
    """Hindsight lines of the requested epochs (`e=N` in the line), plus those without an epoch
    (printed after the main loop)."""
    out = []
    for line in lines:
        m = _EPOCH.search(line)
        if m is None or int(m.group(1)) in epochs:
            out.append(line)
    return out


def compare_lines(got: list[str], want: list[str]) -> dict:
    """Line-for-line comparison: exact or not, and where the first difference is."""
    if got == want:
        return {"exact": True, "got": len(got), "want": len(want), "first_diff": None}
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            diff = {"line": i + 1, "got": g, "want": w}
            break
    else:
        i = min(len(got), len(want))
        diff = {
            "line": i + 1,
            "got": got[i] if i < len(got) else "<end of output>",
            "want": want[i] if i < len(want) else "<end of output>",
        }
    return {"exact": False, "got": len(got), "want": len(want), "first_diff": diff}


def mask(text: str, patterns: list[str]) -> str:
    for p in patterns:
        text = re.sub(p, "<masked>", text)
    return text


# --------------------------------------------------------------------------------------------
# getting the files


def mirror_dir(owner_name: str, mirror: Path) -> Path | None:
    owner, name = owner_name.split("/")
    for cand in (
        mirror / f"{owner}+{name}" / "repo",
        mirror / owner / name,
        mirror / f"{owner}+{name}",
    ):
        if cand.is_dir() and ((cand / "HEAD").is_file() or (cand / ".git").exists()):
            return cand
    return None


def _git(args: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, timeout=timeout, **kw)


def get_repo(s: Script, cache: Path) -> tuple[list[str], str]:
    """git arguments (`--git-dir=...`) reaching a repository holding s.commit, and where from."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        d = mirror_dir(s.owner_name, Path(mirror))
        if d is not None:
            gd = d if (d / "HEAD").is_file() else d / ".git"
            return [f"--git-dir={gd}"], f"mirror {d}"
    dest = cache / s.owner_name.replace("/", "+")
    if not dest.exists():
        r = _git(["clone", "--quiet", "--bare", s.repo, str(dest)])
        if r.returncode != 0:
            raise RuntimeError(f"git clone {s.repo} failed: {r.stderr.strip()}")
    return [f"--git-dir={dest}"], f"clone of {s.repo}"


def materialise(s: Script, git: list[str], dest: Path) -> list[str]:
    """Write the files s needs at s.commit into dest; return the paths written."""
    r = _git([*git, "ls-tree", "-r", "--name-only", s.commit])
    if r.returncode != 0:
        raise RuntimeError(f"commit {s.commit} not found: {r.stderr.strip()}")
    tree = r.stdout.splitlines()
    wanted = []
    for pattern in s.files:
        hits = [p for p in tree if _glob_match(p, pattern)]
        if not hits:
            raise RuntimeError(f"{pattern!r} matches no file at {s.commit[:12]}")
        wanted.extend(h for h in hits if h not in wanted)
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", *git, "archive", "--format=tar", s.commit, "--", *wanted],
        capture_output=True,
        timeout=600,
    )
    if archive.returncode != 0:
        raise RuntimeError(f"git archive failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return wanted


def _glob_match(path: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    if pattern.endswith("/"):
        return path.startswith(pattern)
    return path == pattern or fnmatchcase(path, pattern)


# --------------------------------------------------------------------------------------------
# running steps


@dataclass
class Step:
    cmd: list[str]
    rc: int | None
    wall_s: float
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def florc_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("florc:")]

    def tail(self, n: int = 12) -> str:
        lines = self.stderr.strip().splitlines()
        return "\n".join(lines[-n:])


def _limit(mem_mb: int | None):
    def pre() -> None:
        if mem_mb:
            b = mem_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (b, b))

    return pre


def run_step(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    mem_mb: int | None = None,
) -> Step:
    """Run cmd in its own process group; on timeout the whole group is killed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_limit(mem_mb),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        timed_out = True
    wall = time.perf_counter() - t0
    return Step(cmd, proc.returncode, wall, out or "", err or "", timed_out)


COMPILE_PROBE = r"""
import json, resource, sys, time
from pathlib import Path
from florc.project import find_root
from florc.transforms.compiler import compile_project
import libcst  # noqa: F401  (part of the baseline)
script = Path(sys.argv[1]).resolve()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
result = compile_project(script, find_root(script))
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "peak_mb": (peak - base) / 1024, "baseline_mb": base / 1024,
                  "files": len(result.files), "main_loop": result.main_loop,
                  "main_loop_reason": result.main_loop_reason}))
"""


# --------------------------------------------------------------------------------------------
# one script


@dataclass
class Options:
    timeout: float = 120.0
    mem_mb: int = 6144
    keep: bool = False
    budget_record: bool = False
    plain_only: bool = False
    workdir: Path | None = None


def _env(s: Script) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop(MIRROR_ENV, None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(s.env)
    return env


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _summary(step: Step, prefix: str) -> str | None:
    for line in step.florc_lines():
        if line.startswith(prefix):
            return line
    return None


def _failure(step: Step, what: str) -> dict:
    if step.timed_out:
        why = f"timed out after {step.wall_s:.0f} s"
    else:
        why = f"exit status {step.rc}"
    return {
        "step": what,
        "command": " ".join(step.cmd[1:]) if step.cmd else "",
        "why": why,
        "stderr_tail": step.tail(),
        "stdout_tail": "\n".join(step.stdout.splitlines()[-5:]),
    }


def run_script(s: Script, opts: Options, cache: Path) -> dict:
    res: dict = {
        "name": s.name,
        "repo": s.repo,
        "commit": s.commit,
        "shape": s.shape,
        "command": " ".join(s.command),
        "cwd": s.cwd,
        "epochs": s.epochs,
        "notes": s.notes,
        "setup_edits": len(s.setup),
        "failures": [],
        "levels": {},
    }
    py = sys.executable
    florc = [py, "-m", "florc"]
    env = _env(s)
    work = Path(tempfile.mkdtemp(prefix=f"primer-{s.name}-", dir=opts.workdir))
    res["workdir"] = str(work)
    t_all = time.perf_counter()
    try:
        git, source = get_repo(s, cache)
        res["source"] = source.split(" ")[0]
        base = work / "base"
        res["files"] = materialise(s, git, base)
        for e in s.setup:
            e.apply(base)
        for cmd in s.prepare:
            cmd = cmd.format(python=py, prep=PRIMER / "prep.py")
            st = run_step(["bash", "-c", cmd], base / s.cwd, env, opts.timeout)
            if not st.ok:
                res["failures"].append(_failure(st, f"prepare: {cmd}"))
                return res
        ident = ["-c", "user.name=primer", "-c", "user.email=primer@localhost"]
        for args in (["init", "-q"], ["add", "-A"], [*ident, "commit", "-q", "-m", "primer"]):
            subprocess.run(["git", *args], cwd=base, capture_output=True, check=True)
        run_cmd = [py, *s.command]
        cwd_of = lambda root: root / s.cwd  # noqa: E731

        # 1. plain run of the script as set up
        plain = run_step(run_cmd, cwd_of(_copy(base, work / "plain")), env, opts.timeout)
        res["plain_s"] = plain.wall_s
        if not plain.ok:
            res["failures"].append(_failure(plain, "plain run"))
            return res

        # 2. the truth: plain runs of each edited copy
        truth: dict[str, list[str]] = {}
        for level in LEVELS:
            d = _copy(base, work / f"truth-{level}")
            for e in s.hindsight[level]:
                e.apply(d)
            st = run_step(run_cmd, cwd_of(d), env, opts.timeout)
            lv = res["levels"].setdefault(level, {})
            lv["truth_s"] = st.wall_s
            if not st.ok:
                res["failures"].append(_failure(st, f"plain run of the {level}-level edit"))
                continue
            truth[level] = hindsight_lines(st.stdout)
            lv["truth_lines"] = len(truth[level])
            lv["expected"] = expected_for(truth[level], epochs_of(s.epochs))
            if not lv["expected"]:
                res["failures"].append(
                    {
                        "step": f"{level} edit",
                        "why": f"the edit prints nothing for epochs {s.epochs} in a plain run",
                    }
                )

        if opts.plain_only:
            return res

        # 3. compile alone: time and peak memory
        probe = [py, "-c", COMPILE_PROBE, s.script_file]
        st = run_step(probe, base, env, opts.timeout, opts.mem_mb)
        if st.ok:
            try:
                res["compile"] = json.loads(st.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                res["compile"] = {"error": st.stdout[-300:]}
        else:
            res["compile"] = {"error": _failure(st, "compile")["why"], "wall_s": st.wall_s}
            res["failures"].append(_failure(st, "compile (compile_project alone)"))

        # 4. instrument --report
        st = run_step(
            [*florc, "instrument", "--report", s.script_file], base, env, opts.timeout, opts.mem_mb
        )
        res["report_s"] = st.wall_s
        res["report"] = st.stdout[:20000]
        if not st.ok:
            res["failures"].append(_failure(st, "instrument --report"))
        if "error" in res["compile"] and not st.ok:
            res["skipped"] = "record and replay not run: the compile failed (they compile too)"
            return res

        # 5. record
        rec = _copy(base, work / "recorded")
        records = ["budget", "all"] if opts.budget_record else ["all"]
        for kind in records:
            extra = ["--checkpoint-all"] if kind == "all" else []
            st = run_step(
                [*florc, "record", *extra, *s.command],
                cwd_of(rec),
                env,
                opts.timeout * 2,
                opts.mem_mb,
            )
            r = {
                "s": st.wall_s,
                "ratio": st.wall_s / plain.wall_s,
                "ok": st.ok,
                "first_line": st.florc_lines()[0] if st.florc_lines() else None,
                "done": _summary(st, "florc: run"),
                "florc_lines": st.florc_lines()[:20],
            }
            r["same_output"] = mask(st.stdout, s.volatile) == mask(plain.stdout, s.volatile)
            if st.ok and not r["same_output"]:
                a = mask(plain.stdout, s.volatile).splitlines()
                b = mask(st.stdout, s.volatile).splitlines()
                r["output_diff"] = compare_lines(b, a)["first_diff"]
            res[f"record_{kind}"] = r
            if not st.ok:
                res["failures"].append(_failure(st, f"record ({kind})"))
        if not res.get("record_all", {}).get("ok"):
            res["skipped"] = "replays not run: the recording failed"
            return res

        # 6. replays
        for level in LEVELS:
            lv = res["levels"].setdefault(level, {})
            if level not in truth:
                lv["verdict"] = "not run (no truth)"
                continue
            d = _copy(rec, work / f"replay-{level}")
            for e in s.hindsight[level]:
                e.apply(d)
            st = run_step(
                [*florc, "replay", s.command[0], "--epochs", s.epochs],
                cwd_of(d),
                env,
                opts.timeout * 2,
                opts.mem_mb,
            )
            lv["replay_s"] = st.wall_s
            lv["ratio"] = st.wall_s / plain.wall_s
            lv["florc_lines"] = st.florc_lines()[:30]
            lv["done"] = _summary(st, "florc: replay")
            lv["fidelity"] = _summary(st, "florc: fidelity")
            lv["rc"] = st.rc
            if not st.ok:
                lv["exact"] = False
                lv["verdict"] = "failed"
                res["failures"].append(_failure(st, f"replay ({level} level)"))
                continue
            got = st.stdout.splitlines()
            cmp = compare_lines(got, lv["expected"])
            lv.update(cmp)
            if not cmp["exact"]:
                hs = compare_lines(hindsight_lines(st.stdout), lv["expected"])
                lv["hindsight_only_exact"] = hs["exact"]
                res["failures"].append(
                    {
                        "step": f"replay ({level} level)",
                        "command": f"florc replay {s.command[0]} --epochs {s.epochs}",
                        "why": f"output differs from the truth: {cmp['got']} lines replayed, "
                        f"{cmp['want']} expected; first difference at line "
                        f"{cmp['first_diff']['line']}",
                        "first_diff": cmp["first_diff"],
                        "stderr_tail": st.tail(),
                    }
                )
            lv["verdict"] = "exact" if cmp["exact"] else "differs"
    except Exception as exc:  # a broken manifest entry or repository: recorded, never fatal
        res["failures"].append({"step": "primer", "why": f"{type(exc).__name__}: {exc}"})
    finally:
        res["total_s"] = time.perf_counter() - t_all
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    return res


# --------------------------------------------------------------------------------------------
# the report


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if x is None else fmt.format(x)


def _restored(done: str | None) -> str:
    if not done:
        return "—"
    m = re.search(r"\): (.*)$", done)
    return m.group(1) if m else done.replace("florc: ", "")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_WORK = re.compile(r"/[^\s'\"]*?/primer-[A-Za-z0-9-]+?-[A-Za-z0-9_]{8}")


def scrub(obj):
    """Results without this machine's paths: the project is <work>, the interpreter python."""
    if isinstance(obj, str):
        obj = obj.replace(sys.executable, "python").replace(str(REPO), "<florc>")
        return _WORK.sub("<work>", obj)
    if isinstance(obj, list):
        return [scrub(x) for x in obj]
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items()}
    return obj


def write_report(results: list[dict], path: Path, meta: dict) -> None:
    results = scrub(results)
    replays = [(r, lv, r["levels"].get(lv, {})) for r in results for lv in LEVELS]
    n_exact = sum(1 for _, _, v in replays if v.get("exact"))
    repos = sorted({r["repo"] for r in results})
    compiles = [r.get("compile", {}) for r in results]
    ok_c = [c for c in compiles if "seconds" in c]
    out = ["# The primer: florc on public training scripts", ""]
    out.append(
        f"Generated by `make primer` ({meta['date']}, florc at `{meta['florc_commit']}`, "
        f"Python {meta['python']}, torch {meta['torch']}, {meta['cpus']} CPUs). "
        "Every number below is from that run."
    )
    for u in meta.get("updated", []):
        out[-1] += (
            f" Rerun on {u['date']} (florc at `{u['florc_commit']}`) for "
            f"{', '.join(u['only'])}, after a fix to their manifest entries."
        )
    out += ["", "## Summary", ""]
    out.append(
        f"- **{n_exact} of {len(replays)} replays exact** "
        f"({len(results)} scripts from {len(repos)} repositories, 3 levels each)."
    )
    if ok_c:
        out.append(
            f"- Compile: {len(ok_c)} of {len(results)} scripts compiled (the others: below); "
            "the slowest took "
            f"{max(c['seconds'] for c in ok_c):.2f} s, the largest peak was "
            f"{max(c['peak_mb'] for c in ok_c):.0f} MB beyond the interpreter's baseline "
            "(bounds asked for: ≤ 1 s and ≤ 300 MB)."
        )
    failed_c = [r["name"] for r, c in zip(results, compiles) if "error" in c]
    if failed_c:
        out.append(f"- Compile failed or ran past its limit on: {', '.join(failed_c)}.")
    within = [
        r["name"]
        for r, c in zip(results, compiles)
        if "seconds" in c and c["seconds"] <= 1 and c["peak_mb"] <= 300
    ]
    out.append(f"- Within the compile bounds: {len(within)} of {len(results)}.")
    out += ["", "## Results", ""]
    out.append(
        "| script | repo@commit | shape | main loop | compile s | compile MB | record÷plain "
        "(budget / all) | replay÷plain (epoch / batch / after) | exact (e/b/a) | "
        "fidelity (e/b/a) | restored (epoch level) |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        c = r.get("compile", {})
        rb, ra = r.get("record_budget", {}), r.get("record_all", {})
        lvs = [r["levels"].get(lv, {}) for lv in LEVELS]
        ex = " / ".join("✓" if v.get("exact") else ("✗" if "verdict" in v else "—") for v in lvs)
        fid = " / ".join(_md(_fid(v.get("fidelity"))) for v in lvs)
        owner = r["repo"].removeprefix("https://github.com/")
        out.append(
            f"| {r['name']} | [{owner}]({r['repo']}/tree/{r['commit']})@{r['commit'][:7]} | "
            f"{_md(r['shape'].split(' (')[0])} | {_md(_short_loop(r))} | "
            f"{_f(c.get('seconds'))} | {_f(c.get('peak_mb'), '{:.0f}')} | "
            f"{_ratio(rb)} / {_ratio(ra)} | "
            f"{' / '.join(_f(v.get('ratio')) for v in lvs)} | {ex} | {fid} | "
            f"{_md(_restored(lvs[0].get('done')))} |"
        )
    out += ["", "## Failures by class (the issue's list)", ""]
    by: dict = {}
    for r in results:
        for cls, ev in classify(r):
            by.setdefault(cls, []).append(f"{r['name']}: {ev}")
    extra = {
        "silent": "wrong lines without a word: the replay differs from the truth and the "
        "fidelity line does not say diverged",
        "slow": "replays that ran past their time limit",
    }
    for cls in ["silent", *CLASSES, "slow"]:
        if cls in by:
            title = CLASSES.get(cls) or extra[cls]
            out.append(f"- **{cls}. {title}**" if cls in CLASSES else f"- **{title}**")
            out += [f"  - {_md(e)}" for e in by[cls]]
    out += ["", "## Per script", ""]
    for r in results:
        out += _script_section(r)
    out += ["## Method", ""]
    out += METHOD.strip().splitlines()
    out += [
        "",
        "## Reproduce",
        "",
        "```sh",
        "make primer",
        "# or, for one script, keeping its folders:",
        "FLORC_PRIMER_MIRROR=/path/to/mirrors \\",
        "  .venv/bin/python primer/run.py --only nanogpt --keep",
        "```",
        "",
    ]
    path.write_text("\n".join(out))


CLASSES = {
    1: "compile does not end (unbounded analysis)",
    2: "the wrong main loop (a data-loading loop in a local module)",
    3: "state that escapes the checkpoint (module attributes, namedtuples)",
    4: "checkpoints that cannot be taken",
    5: "`fidelity: diverged` on a replay whose new lines are exact (a false alarm, or a "
    "recomputed line of the script's own that differs)",
    6: "training inside an installed framework",
}


def classify(r: dict) -> list[tuple[int | str, str]]:
    """The issue's failure classes this script's results show, each with its evidence."""
    found: list[tuple[int | str, str]] = []
    c = r.get("compile", {})
    if "error" in c:
        found.append((1, f"compile_project alone: {c['error']}"))
    ml = _main_loop(r)
    script = os.path.normpath(os.path.join(r.get("cwd", "."), r["command"].split()[0]))
    m = re.match(r"(\S+):\d+", ml or "")
    reason = c.get("main_loop_reason") or ""
    if m and m.group(1) != script and "loop that trains" not in reason:
        # a loop in another file is right when it trains (a Trainer class in a local package)
        found.append((2, f"main loop {m.group(0)}, not in {script}: {reason}"))
    for line in (r.get("record_all") or {}).get("florc_lines", []):
        # checkpoints left out by design (a live autograd graph) are not failures; state that
        # no pickler can write is
        if "not usable" in line and ("cannot be copied" in line or "pickle" in line):
            found.append((4, line.removeprefix("florc: ")))
    for line in (r.get("record_all") or {}).get("florc_lines", []):
        if "no main loop" in line or "no main-loop iterations" in line:
            found.append((6, line))
    for level in LEVELS:
        v = r["levels"].get(level, {})
        tail = " ".join(
            f.get("stderr_tail", "")
            for f in r["failures"]
            if f["step"] == f"replay ({level} level)"
        )
        if "non-empty TensorList" in tail or "non-empty list of Tensors" in tail:
            err = next(x for x in tail.splitlines() if "non-empty" in x).strip()
            found.append((3, f"{level} replay: {err}"))
        if v.get("exact") and "diverged" in (v.get("fidelity") or ""):
            found.append((5, f"{level} replay exact, yet `{_fid(v['fidelity'])}`"))
        fid = v.get("fidelity") or ""
        if v.get("verdict") == "differs" and "diverged" not in fid:
            d = v.get("first_diff") or {}
            found.append(
                (
                    "silent",
                    f"{level} replay: `{d.get('got')}` where the truth has `{d.get('want')}`, "
                    f"and florc says `{_fid(fid)}`",
                )
            )
        if v.get("verdict") == "failed" and "timed out" in " ".join(
            f["why"] for f in r["failures"] if f["step"] == f"replay ({level} level)"
        ):
            found.append(("slow", f"{level} replay timed out (re-executes every block)"))
    return found


def _main_loop(r: dict) -> str | None:
    for line in r.get("report", "").splitlines():
        low = line.lower()
        if low.startswith("main loop:"):
            return line[len("main loop:") :].strip()
        if low.startswith("no main loop"):
            return line.strip()
    return None


def _short_loop(r: dict) -> str:
    ml = _main_loop(r)
    if not ml:
        return "—"
    m = re.match(r"(\S+:\d+)", ml)
    return f"`{m.group(1)}`" if m else ml[:40]


def _ratio(rec: dict) -> str:
    if not rec:
        return "—"
    if not rec.get("ok"):
        return "failed"
    return f"{rec['ratio']:.2f}"


def _fid(line: str | None) -> str:
    if not line:
        return "—"
    return line.removeprefix("florc: fidelity: ")


def _script_section(r: dict) -> list[str]:
    out = [f"### {r['name']}", ""]
    out.append(
        f"- **Script**: `{r['command']}` (in `{r['cwd']}`), "
        f"[{r['repo'].removeprefix('https://github.com/')}@{r['commit'][:12]}]"
        f"({r['repo']}/tree/{r['commit']}); shape: {r['shape']}."
    )
    c = r.get("compile", {})
    if "seconds" in c:
        out.append(
            f"- **Compile**: {c['seconds']:.2f} s, {c['peak_mb']:.0f} MB peak beyond a "
            f"{c['baseline_mb']:.0f} MB baseline."
        )
    elif c:
        out.append(f"- **Compile**: failed — {c.get('error')}.")
    ml = _main_loop(r)
    if ml:
        out.append(f"- **Main loop** (`instrument --report`): {ml}")
    if "plain_s" in r:
        out.append(f"- **Plain run**: {r['plain_s']:.1f} s.")
    for kind in ("budget", "all"):
        rec = r.get(f"record_{kind}")
        if rec:
            if rec.get("same_output"):
                same = "same output as the plain run"
            else:
                same = "**output differs from the plain run**"
                d = rec.get("output_diff")
                if d:
                    same += f" (line {d['line']}: `{_md(d['got'])}` vs `{_md(d['want'])}`)"
            label = "default budget" if kind == "budget" else "`--checkpoint-all`"
            out.append(
                f"- **Record ({label})**: {rec['s']:.1f} s ({rec['ratio']:.2f}× plain), {same}."
            )
            if rec.get("first_line"):
                out.append(f"  - `{rec['first_line']}`")
            if rec.get("done"):
                out.append(f"  - `{rec['done']}`")
    for level in LEVELS:
        v = r["levels"].get(level, {})
        if "verdict" not in v:
            continue
        line = f"- **Replay, {level} level** (`--epochs {r['epochs']}`): {v['verdict']}"
        if "replay_s" in v:
            line += f", {v['replay_s']:.1f} s ({v['ratio']:.2f}× plain)"
        if "got" in v:
            line += f"; {v['got']} lines replayed, {v['want']} expected"
        out.append(line + ".")
        for key in ("done", "fidelity"):
            if v.get(key):
                out.append(f"  - `{v[key]}`")
    if r.get("skipped"):
        out.append(f"- {r['skipped']}.")
    if r.get("notes"):
        out.append(f"- **Notes**: {r['notes']}")
    if r["failures"]:
        out.append("- **Failures**:")
        for f in r["failures"]:
            cmd = f" — `{f['command']}`" if f.get("command") else ""
            out.append(f"  - {f['step']}: {f['why']}{cmd}")
            if f.get("first_diff"):
                d = f["first_diff"]
                out.append(f"    - replayed: `{_md(d['got'])}`")
                out.append(f"    - expected: `{_md(d['want'])}`")
            tail = f.get("stderr_tail", "").strip()
            if tail:
                out.append("    ```")
                out += [f"    {t}" for t in tail.splitlines()[-8:]]
                out.append("    ```")
    out.append("")
    return out


METHOD = """
For each script the runner (`primer/run.py`) writes the files the manifest lists, at the pinned
commit, into a fresh folder (`git archive`), applies the manifest's *setup edits* (smaller
constants, a seed where the script has none: documented per script, applied to every copy alike),
prepares the data offline, and makes the folder a git repository (florc keeps its store at the git
root). Then, each step a subprocess with a time limit (120 s; record and replay 240 s) and the
florc steps under a 6 GiB address-space limit, so a runaway compile ends in `MemoryError` instead
of taking the machine:

- **Plain run** of the script: its wall time is the denominator of every ratio.
- **Truth**: a plain run of each edited copy (one per level). An edit adds lines after, before or in
  place of an anchor line; every added statement prints a line starting with `HINDSIGHT`, the ones
  inside the main loop with `e=<epoch>` as the script counts it. The expected replay output is the
  truth's `HINDSIGHT` lines whose epoch is in the replayed range, plus those without an epoch
  (after-loop lines).
- **Compile**: `compile_project` of the script alone, in a fresh interpreter that has already
  imported florc's compiler and libcst; seconds by `perf_counter`, memory as the growth of the
  process's peak resident set (`ru_maxrss`) across the call — the baseline is the interpreter with
  those imports. `florc instrument --report` runs after it, and its report is kept in
  `primer/results.json`.
- **Record**: `florc record --checkpoint-all` (the recording replayed: it checkpoints at every
  opportunity, so the replays exercise restoring every block; its ratio to the plain run is an
  upper bound of the overhead). With `--budget-record` the runner first records with the default
  overhead budget as well (the ratio a user sees), in the same project; the replays then use the
  later, `--checkpoint-all` recording. Each recorded output must equal the plain run's, after
  masking the wall-clock figures the manifest names for the script (`volatile`).
- **Replay**: per level, a copy of the recorded project with the edit applied, then
  `florc replay SCRIPT --epochs SPEC`. *Exact* means its standard output equals the expected lines,
  line for line. The fidelity line and florc's summary of what was restored and re-executed are
  quoted as florc printed them.
"""


# --------------------------------------------------------------------------------------------


def _florc_commit() -> str:
    r = _git(["-C", str(REPO), "rev-parse", "--short", "HEAD"], timeout=30)
    dirty = _git(["-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], timeout=30)
    return r.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run florc over public training scripts.")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this script (repeatable)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary project folders")
    p.add_argument("--jobs", type=int, default=1, help="scripts run at once (default 1)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per step (default 120)")
    p.add_argument("--mem-mb", type=int, default=6144, help="address-space limit of florc steps")
    p.add_argument(
        "--budget-record",
        action="store_true",
        help="also record with the default overhead budget first (its ratio to the plain run)",
    )
    p.add_argument(
        "--plain-only",
        action="store_true",
        help="stop after the plain runs (to try a manifest entry)",
    )
    p.add_argument("--manifest", type=Path, default=MANIFEST)
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="default primer/results.json (primer/results-only.json with --only)",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        help="default docs/PRIMER.md (primer/PRIMER-only.md with --only)",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="with --only: replace those scripts' entries in primer/results.json and rewrite "
        "docs/PRIMER.md from it",
    )
    p.add_argument(
        "--report-from",
        type=Path,
        metavar="RESULTS_JSON",
        help="write the report from a results file of an earlier run, without running anything",
    )
    a = p.parse_args(argv)
    if a.report_from:
        data = scrub(json.loads(a.report_from.read_text()))
        out = a.report or REPO / "docs" / "PRIMER.md"
        write_report(data["results"], out, data["meta"])
        print(f"primer: report in {out}", file=sys.stderr)
        return 0
    try:
        scripts = load_manifest(a.manifest)
    except (ManifestError, tomllib.TOMLDecodeError) as exc:
        print(f"primer: {a.manifest}: {exc}", file=sys.stderr)
        return 2
    if a.only:
        unknown = set(a.only) - {s.name for s in scripts}
        if unknown:
            print(
                f"primer: no script named {', '.join(sorted(unknown))} in the manifest",
                file=sys.stderr,
            )
            return 2
        scripts = [s for s in scripts if s.name in a.only]
    opts = Options(
        timeout=a.timeout,
        mem_mb=a.mem_mb,
        keep=a.keep,
        budget_record=a.budget_record,
        plain_only=a.plain_only,
    )
    cache = Path(tempfile.gettempdir()) / "florc-primer-clones"
    cache.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    commit = _florc_commit()  # the code measured: the commit when the run starts

    def one(s: Script) -> dict:
        print(f"primer: {s.name} ...", file=sys.stderr, flush=True)
        r = run_script(s, opts, cache)
        ex = sum(1 for lv in LEVELS if r["levels"].get(lv, {}).get("exact"))
        print(
            f"primer: {s.name}: {ex}/3 exact, {len(r['failures'])} failures, "
            f"{r['total_s']:.0f} s" + (f" (kept in {r['workdir']})" if a.keep else ""),
            file=sys.stderr,
            flush=True,
        )
        done.append(r)
        # what has finished so far, so a long run can be looked at (and survives an interrupt)
        (PRIMER / "results-partial.json").write_text(json.dumps(done, indent=1, default=str))
        return r

    done: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        results = list(pool.map(one, scripts))
    import torch

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "florc_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "total_s": time.perf_counter() - t0,
        "only": a.only,
    }
    if a.update and a.only and not a.plain_only:
        path = a.results or PRIMER / "results.json"
        data = json.loads(path.read_text())
        fresh = {r["name"]: r for r in results}
        data["results"] = [fresh.pop(r["name"], r) for r in data["results"]] + list(fresh.values())
        data["meta"].setdefault("updated", []).append({**meta, "only": a.only})
        path.write_text(json.dumps(scrub(data), indent=1, default=str))
        out = a.report or REPO / "docs" / "PRIMER.md"
        write_report(data["results"], out, data["meta"])
        print(f"primer: updated {path} and {out}", file=sys.stderr)
        return 0
    partial = bool(a.only) or a.plain_only
    results_path = a.results or PRIMER / ("results-only.json" if partial else "results.json")
    default_report = PRIMER / "PRIMER-only.md" if partial else REPO / "docs" / "PRIMER.md"
    report_path = a.report or default_report
    results_path.write_text(
        json.dumps(scrub({"meta": meta, "results": results}), indent=1, default=str)
    )
    write_report(results, report_path, meta)
    n = sum(1 for r in results for lv in LEVELS if r["levels"].get(lv, {}).get("exact"))
    print(
        f"primer: {n} of {3 * len(results)} replays exact; {meta['total_s']:.0f} s; "
        f"results in {results_path}, report in {report_path}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
