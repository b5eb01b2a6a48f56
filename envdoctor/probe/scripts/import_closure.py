"""The other packages' modules that fix's verify statements will import (probe_hold.py's warm-up).

Runs inside the *target* interpreter: standard library only, Python 3.6+. Nothing is imported here:
the statements' own package is read as source (ast), from `import mmcv.ops` along its module-level
imports inside the package, and the modules of other packages those import on the way are listed, in
the order they are first met. Only imports that run whenever the module's top level runs count: at
module level, in class bodies, `with` blocks and `finally`, and the first import of a `try` body (the
others there run only if it succeeds); not inside functions, and not under an `if` (which may not run in
this interpreter: TYPE_CHECKING, version tests). So every name listed is one a fresh `import mmcv.ops`
imports too (or tries to, inside a `try`), once the statements' package imports at all.
"""
import ast
from importlib.machinery import PathFinder

MAX_FILES = 2000  # a package larger than this is read only this far (the list is then shorter, not wrong)


def statement_modules(statement):
    """The modules a verify statement imports (`import a.b`, `from a.b import c`)."""
    try:
        tree = ast.parse(statement)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def find(name, cache):
    """(its source file or None, whether it is a package, its search locations) of module `name`, found by
    the path finder without importing anything; None when it is not found."""
    if name in cache:
        return cache[name]
    cache[name] = None
    parent = name.rpartition(".")[0]
    path = None
    if parent:
        found = find(parent, cache)
        if found is None or not found[2]:
            return None
        path = found[2]
    try:
        spec = PathFinder.find_spec(name, path)
    except (ImportError, ValueError, OSError):
        return None
    if spec is None:
        return None
    origin = spec.origin if spec.has_location and str(spec.origin).endswith(".py") else None
    cache[name] = (origin, spec.submodule_search_locations is not None, spec.submodule_search_locations)
    return cache[name]


def unconditional(body):
    """The import statements that run whenever this block runs."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.ClassDef):
            for sub in unconditional(node.body):
                yield sub
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            # a fresh import leaves the try body at the first import that fails (an optional module absent):
            # only that first one is certain to be tried; `else` runs only if none failed, `finally` always
            for sub in unconditional(node.body):
                yield sub
                break
            for sub in unconditional(node.finalbody):
                yield sub
        elif isinstance(node, (ast.With, getattr(ast, "AsyncWith", ast.With))):
            for sub in unconditional(node.body):
                yield sub


def prefixes(name):
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(statements):
    """The modules of other packages that the statements import, in the order first met."""
    cache = {}
    tops = set()
    queue = []
    for name in (m for s in statements for m in statement_modules(s)):
        tops.add(name.split(".")[0])
        queue.extend(prefixes(name))
    seen = set()
    external = []

    def reach(name):
        if name.split(".")[0] in tops:
            for p in prefixes(name):
                if p not in seen:
                    queue.append(p)
        elif name != "__future__" and name not in external:
            external.append(name)

    files = 0
    while queue and files < MAX_FILES:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        found = find(name, cache)
        if found is None or found[0] is None:
            continue
        files += 1
        try:
            with open(found[0], "rb") as f:
                tree = ast.parse(f.read(), found[0])
        except (OSError, SyntaxError, ValueError):
            continue
        package = name if found[1] else name.rpartition(".")[0]
        for node in unconditional(tree.body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    reach(alias.name)
                continue
            if node.level:
                base_parts = package.split(".") if package else []
                if node.level - 1 >= len(base_parts):
                    continue  # above the top-level package (or in a module of no package): fails there too
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base:
                continue
            reach(base)
            if base.split(".")[0] in tops:  # `from .x import y`: y may be a submodule of the package
                for alias in node.names:
                    if alias.name != "*" and find(base + "." + alias.name, cache) is not None:
                        reach(base + "." + alias.name)
    return external
