"""The user's project: its root, its files, where its store lives, and its configuration.

Configuration is `[tool.florc]` in pyproject.toml, or `[florc]` in setup.cfg:

    [tool.florc]
    scripts = ["train*.py", "experiments/**/train.py"]   # which files are training scripts
    overhead = 0.02                                       # default checkpoint overhead budget
    store = ".florc"                                      # store location (relative to the root)

Command-line options override these. Globs match paths relative to the project root (the git
root above the script, else its folder); `**` matches any number of folders. A project without a
configuration treats files named `train*.py` or `*_train.py` as training scripts. Either way,
`florc instrument --check` also counts a file in which it finds a loop that trains (or that does
not parse and has a training step, or was a training script in HEAD): see docs/COMMIT_HOOKS.md.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from florc.errors import UsageError

DEFAULT_SCRIPTS = ("**/train*.py", "**/*_train.py")


@dataclass
class Config:
    scripts: tuple[str, ...] = DEFAULT_SCRIPTS
    overhead: float | None = None
    store: Path | None = None
    source: str = ""  # "pyproject.toml [tool.florc]", "setup.cfg [florc]" or "" (defaults)
    configured_scripts: bool = False  # `scripts` came from the file, not the defaults

    def is_training_script(self, path: Path, root: Path) -> bool:
        try:
            rel = PurePosixPath(path.resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            return False
        return any(_glob_match(rel, pattern) for pattern in self.scripts)


def _glob_match(rel: PurePosixPath, pattern: str) -> bool:
    """Match a relative path against a glob where `**/` matches zero or more folders."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        else:
            ch = pattern[i]
            regex += "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
            i += 1
    return re.fullmatch(regex, str(rel)) is not None


def load(root: Path) -> Config:
    """The configuration of the project at root (defaults when there is none)."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{pyproject}: not valid TOML ({exc}); fix the file") from None
        table = data.get("tool", {}).get("florc")
        if table is not None:
            return _from_mapping(table, root, f"{pyproject.name} [tool.florc]")
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read(setup_cfg, encoding="utf-8")
        except configparser.Error as exc:
            raise UsageError(f"{setup_cfg}: cannot be read ({exc}); fix the file") from None
        if parser.has_section("florc"):
            section = dict(parser.items("florc"))
            if "scripts" in section:
                section["scripts"] = section["scripts"].split()  # type: ignore[assignment]
            return _from_mapping(section, root, f"{setup_cfg.name} [florc]")
    return Config()


def _from_mapping(table: dict, root: Path, source: str) -> Config:
    unknown = sorted(set(table) - {"scripts", "overhead", "store"})
    if unknown:
        raise UsageError(
            f"{source}: unknown setting {', '.join(unknown)}; "
            "known settings are scripts, overhead and store"
        )
    cfg = Config(source=source)
    if "scripts" in table:
        scripts = table["scripts"]
        if isinstance(scripts, str):
            scripts = [scripts]
        if not isinstance(scripts, list) or not all(isinstance(s, str) for s in scripts):
            raise UsageError(f'{source}: scripts must be a list of globs, e.g. ["train*.py"]')
        cfg.scripts = tuple(scripts)
        cfg.configured_scripts = True
    if "overhead" in table:
        try:
            cfg.overhead = float(table["overhead"])
        except (TypeError, ValueError):
            raise UsageError(f"{source}: overhead must be a number, e.g. 0.05") from None
        if not 0 <= cfg.overhead <= 1:
            raise UsageError(f"{source}: overhead {cfg.overhead} must be between 0 and 1")
    if "store" in table:
        if not isinstance(table["store"], str) or not table["store"]:
            raise UsageError(f'{source}: store must be a folder path, e.g. ".florc"')
        store = Path(table["store"]).expanduser()
        cfg.store = store if store.is_absolute() else root / store
    return cfg


STORE_DIRNAME = ".florc"


def find_root(script: Path) -> Path:
    """The project root: the git root above the script, else the script's folder."""
    start = script.resolve().parent
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return start


FLORC_PACKAGE = Path(__file__).resolve().parent


def is_project_file(path: Path, root: Path) -> bool:
    """A Python file of the user's project (compiled with the script), not an installed package,
    and never florc's own (a script in a florc checkout imports florc from the project root)."""
    resolved = path.resolve()
    if resolved.is_relative_to(FLORC_PACKAGE):
        return False
    try:
        rel = resolved.relative_to(root.resolve())
    except ValueError:
        return False
    bad = {"site-packages", "dist-packages", ".florc", ".venv", "venv", ".git", "__pycache__"}
    return not any(p in bad for p in rel.parts) and path.suffix == ".py"


def ignore_in_git(folder: Path) -> None:
    """A `.gitignore` of `*` in the store, so that git never picks it up."""
    marker = folder / ".gitignore"
    if not marker.exists():
        try:
            marker.write_text("# florc's store: never committed\n*\n")
        except OSError:
            pass


def store_location(root: Path, location: Path | None = None) -> Path:
    """Where the project's store is: location if given, else the configured store, else .florc."""
    if location is not None:
        return location
    return load(root).store or root / STORE_DIRNAME
