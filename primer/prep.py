"""Offline data for the primer's scripts, made from a text the Python standard library ships.

The text is the help topics of `pydoc_data.topics` (English prose and code, about 700 KB), joined
in sorted key order, so every machine with the same Python makes the same files.

    python prep.py text OUT --lines N      first N non-empty lines, one per line
    python prep.py words OUT --count N     N distinct lowercase words, one per line (names.txt-like)
    python prep.py chars DIR --chars N     character-level train.bin / val.bin (uint16, 9:1) and
                                           meta.pkl (vocab_size, stoi, itos), as a char-level GPT
                                           trainer reads them
"""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path


def stdlib_text() -> str:
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


def text_lines(n: int) -> list[str]:
    lines = [line.strip() for line in stdlib_text().splitlines()]
    return [line for line in lines if line][:n]


def words(n: int) -> list[str]:
    seen: dict[str, None] = {}
    for w in re.findall(r"[a-z]{3,12}", stdlib_text().lower()):
        seen.setdefault(w, None)
        if len(seen) == n:
            break
    return list(seen)


def write_chars(out: Path, n: int) -> None:
    import numpy as np

    data = stdlib_text()[:n]
    chars = sorted(set(data))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for ch, i in stoi.items()}
    ids = np.array([stoi[c] for c in data], dtype=np.uint16)
    cut = int(len(ids) * 0.9)
    out.mkdir(parents=True, exist_ok=True)
    ids[:cut].tofile(out / "train.bin")
    ids[cut:].tofile(out / "val.bin")
    with open(out / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("text")
    t.add_argument("out", type=Path)
    t.add_argument("--lines", type=int, required=True)
    w = sub.add_parser("words")
    w.add_argument("out", type=Path)
    w.add_argument("--count", type=int, required=True)
    c = sub.add_parser("chars")
    c.add_argument("out", type=Path)
    c.add_argument("--chars", type=int, required=True)
    a = p.parse_args(argv)
    if a.what == "chars":
        write_chars(a.out, a.chars)
        return
    lines = text_lines(a.lines) if a.what == "text" else words(a.count)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("".join(f"{line}\n" for line in lines))


if __name__ == "__main__":
    main()
