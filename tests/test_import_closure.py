"""probe/scripts/import_closure.py: which other packages' modules a verify statement will import, read from the
package's source without importing it (the held verification's warm-up, probe_hold.warm).

Real interpreters: this one, the oldest the probe supports (3.6) and the newest (3.13), when pyenv has them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import pyenv_python

SCRIPT = Path(__file__).resolve().parent.parent / "envdoctor" / "probe" / "scripts" / "import_closure.py"
INTERPRETERS = [sys.executable] + [str(p) for p in (pyenv_python("3.6"), pyenv_python("3.13")) if p]

RUN = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("closure_under_test", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
print(json.dumps(mod.closure(sys.argv[2:])))
print(json.dumps(sorted(n for n in sys.modules if n.startswith("edc"))))
"""


def closure(python: str, site: Path, *statements: str) -> tuple[list[str], list[str]]:
    proc = subprocess.run([python, "-c", RUN, str(SCRIPT), *statements], capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    found, loaded = proc.stdout.splitlines()
    return json.loads(found), json.loads(loaded)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.mark.parametrize("python", INTERPRETERS)
def test_the_modules_of_other_packages_that_run_at_import_in_order(tmp_path, python):
    write(tmp_path, {
        "edcpkg/__init__.py": "import edcdep_a\nfrom . import sub\n",
        "edcpkg/sub/__init__.py": """
            from .ops import apply            # a module of the package: read too
            from ..helpers import tool        # two levels up: edcpkg.helpers
            import edcdep_b.heavy as heavy
            """,
        "edcpkg/sub/ops.py": """
            from __future__ import annotations
            import json
            from edcdep_c.model import Base
            try:
                import edcdep_optional        # tried by a fresh import too: listed
                import edcdep_after_optional  # reached only if the first succeeds: not listed
            except ImportError:
                edcdep_optional = None
            else:
                import edcdep_else            # runs only if nothing failed: not listed
            finally:
                import edcdep_finally         # always runs: listed
            if False:
                import edcdep_never           # under an if: not certain to run
            def apply():
                import edcdep_lazy            # inside a function: not at import
            class K(Base):
                import edcdep_classbody       # a class body runs at import
            with open(__file__):
                import edcdep_with
            """,
        "edcpkg/helpers.py": "from edcpkg.sub import ops\nimport edcdep_a.deep\nfrom .... import above_top\n",
        "edcpkg/unused.py": "import edcdep_unreached\n",  # nothing imports it
        "edcpkg/broken.py": "def (:\n",
    })
    found, loaded = closure(python, tmp_path, "import edcpkg.sub")
    assert found == ["edcdep_a", "edcdep_b.heavy", "json", "edcdep_c.model", "edcdep_optional", "edcdep_finally",
                     "edcdep_classbody", "edcdep_with", "edcdep_a.deep"]
    assert loaded == []  # read, never imported


def test_from_statements_and_several_statements(tmp_path):
    write(tmp_path, {
        "edcx/__init__.py": "import edcdep_x\n",
        "edcx/mod.py": "import edcdep_y\nfrom . import broken\n",
        "edcx/broken.py": "def (:\n",  # unreadable source: skipped, not an error
        "edcz.py": "import edcdep_z\nimport edcx\nfrom . import sibling_of_nothing\n",  # no package: skipped
    })
    found, _ = closure(sys.executable, tmp_path, "from edcx.mod import something", "import edcz")
    assert found == ["edcdep_x", "edcdep_y", "edcdep_z"]
    assert closure(sys.executable, tmp_path, "not python (")[0] == []
    assert closure(sys.executable, tmp_path, "import edc_not_installed")[0] == []
