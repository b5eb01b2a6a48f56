"""Host list expressions as Slurm and pdsh write them: `node[01-08,10],gpu3` -> node01 ... node10, gpu3."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
# a generous bound: a typo like node[1-9999999] must not eat the memory
MAX_HOSTS = 100_000


def _split_top(expr: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


def _expand_one(item: str) -> list[str]:
    m = re.search(r"\[([^\[\]]*)\]", item)
    if not m:
        return [item]
    head, tail = item[:m.start()], item[m.end():]
    names: list[str] = []
    for part in m.group(1).split(","):
        r = _RANGE.match(part.strip())
        if not r:
            raise ValueError(f"{item}: {part!r} is not a number or a range")
        lo, hi = r.group(1), r.group(2) or r.group(1)
        if int(hi) < int(lo) or int(hi) - int(lo) > MAX_HOSTS:
            raise ValueError(f"{item}: range {part} is empty or too large")
        width = len(lo) if lo.startswith("0") else 0
        for n in range(int(lo), int(hi) + 1):
            names.extend(_expand_one(f"{head}{n:0{width}d}{tail}"))
    if len(names) > MAX_HOSTS:
        raise ValueError(f"{item}: more than {MAX_HOSTS} hosts")
    return names


def expand(expr: str) -> list[str]:
    """Every host of the expression, in order, without duplicates; ValueError on a malformed one."""
    seen: dict[str, None] = {}
    for item in _split_top(expr):
        for name in _expand_one(item):
            seen[name] = None
    return list(seen)


def from_launcher(argv: list[str]) -> list[str]:
    """The hosts a pdsh/srun command line names with -w/--nodelist, [] when it names none."""
    hosts: list[str] = []
    for i, arg in enumerate(argv):
        value = None
        if arg in ("-w", "--nodelist") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--nodelist="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-w") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
        if value and not value.startswith(("^", "/", "-")):  # ^file and exclusions are not host names
            try:
                hosts.extend(expand(value))
            except ValueError:
                return []
    return hosts
