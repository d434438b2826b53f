"""Which recorded runs a command works on: `--runs all|3,5,9|since:2026-11-01` and
`--where key=value`, for `florc runs`, `logs`, `replay --runs` and `export`.

A run is known by what it was: its arguments (`run_params`: the script's parsed options where
the recording kept them, else read from its command line) and its git commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from florc.errors import UsageError
from florc.store.index import Store

RUNS_HELP = "Recorded runs: all, 3,5,9, 2-4, or since:2026-11-01 (default: the latest)."
WHERE_HELP = "Only runs whose argument KEY equals VALUE (the script's options), e.g. lr=0.01."


def run_params(meta: dict[str, Any]) -> dict[str, str]:
    """A recorded run's arguments as text, by name: the script's parsed options when the
    recording kept them (env["params"]), else the `--key value`, `--key=value` and `--flag`
    arguments of its command line (those also where a parse was kept: an option argparse did
    not know). Defaults count: `--where epochs=5` matches a run that did not give --epochs
    when its parser's default is 5."""
    from_argv = params_from_argv(list(meta.get("argv", [])))
    params = meta.get("env", {}).get("params")
    if isinstance(params, dict):
        return {**from_argv, **{str(k): _text(v) for k, v in params.items()}}
    return from_argv


def shown_params(meta: dict[str, Any]) -> dict[str, str]:
    """The arguments `florc runs` shows: the options the command line gave or that differ from
    their defaults where the recording kept the parse (env["params_set"]), else every argument
    of the command line."""
    env = meta.get("env", {})
    params, given = env.get("params"), env.get("params_set")
    if isinstance(params, dict) and isinstance(given, list):
        return {str(k): _text(params[k]) for k in given if k in params}
    return params_from_argv(list(meta.get("argv", [])))


def params_from_argv(args: list[str]) -> dict[str, str]:
    """`--lr 0.1 --epochs=3 --cuda -b 8` -> {"lr": "0.1", "epochs": "3", "cuda": "True",
    "b": "8"}; positional arguments are left out."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and len(arg) > 1 and not _is_number(arg):
            key = arg.lstrip("-")
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(args) and (not args[i + 1].startswith("-") or _is_number(args[i + 1])):
                value = args[i + 1]
                i += 1
            else:
                value = "True"
            out[key.replace("-", "_")] = value
        i += 1
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text(value: Any) -> str:
    return str(value)


def matches(params: dict[str, str], where: list[str]) -> bool:
    """Whether a run's arguments satisfy every `key=value` of where (numbers compare as numbers:
    lr=0.01 matches 0.010 and 1e-2)."""
    for cond in where:
        key, value = parse_where(cond)
        have = params.get(key.replace("-", "_"))
        if have is None:
            return False
        if not _equal(have, value):
            return False
    return True


def _equal(have: str, value: str) -> bool:
    if have == value:
        return True
    if _is_number(have) and _is_number(value):
        return float(have) == float(value)
    booleans = {"true", "false"}
    return have.lower() in booleans and have.lower() == value.lower()


def parse_where(cond: str) -> tuple[str, str]:
    key, sep, value = cond.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--where {cond!r}: give KEY=VALUE, e.g. --where lr=0.01")
    return key.strip().lstrip("-"), value.strip()


def select_runs(
    store: Store, spec: str | None, where: list[str] | None = None, script: str | None = None
) -> list[int]:
    """The recorded runs `spec` names (None: every recorded run), of `script` (a relpath) when
    given, whose arguments satisfy `where`; ascending. An unknown id or a bad spec is a
    UsageError that says what is known."""
    records = [r for r in store.runs("record") if script is None or r["script"] == script]
    by_id = {r["id"]: r for r in records}
    if spec is None or spec.strip() == "all":
        chosen = list(by_id)
    elif spec.startswith("since:"):
        day = spec[len("since:") :]
        try:
            since = dt.datetime.fromisoformat(day).timestamp()
        except ValueError:
            raise UsageError(f"--runs {spec}: give a date as since:2026-11-01") from None
        chosen = [i for i, r in by_id.items() if r["started"] >= since]
    else:
        chosen = []
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    a, b = part.split("-", 1)
                    chosen.extend(range(int(a), int(b) + 1))
                else:
                    chosen.append(int(part))
            except ValueError:
                raise UsageError(
                    f"--runs {spec}: give all, run ids (3,5,9 or 2-4) or since:DATE"
                ) from None
        unknown = [i for i in chosen if i not in by_id and "-" not in spec]
        if unknown:
            what = f" of {script}" if script else ""
            known = ", ".join(map(str, by_id)) or "none"
            raise UsageError(
                f"--runs {spec}: {', '.join(map(str, unknown))} not a recorded run{what} "
                f"(recorded runs: {known})"
            )
        chosen = [i for i in chosen if i in by_id]
    if where:
        chosen = [i for i in chosen if matches(run_params(by_id[i]), where)]
    return sorted(set(chosen))
