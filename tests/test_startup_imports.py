"""`check` starts the target's probes before it imports what it needs only afterwards.

The probes (`import torch` in the target) are the critical path; the checks, binary forensics (pyelftools,
pefile), redaction, the renderers and rich are imported by a thread while they run (commands/check.py).
Timing is bench/bench_check.py's job; this asserts the structure that makes it possible, in a fresh
interpreter: what importing the command and the probe pulls in before the first probe process starts."""

from __future__ import annotations

import json
import subprocess
import sys

AFTER_PROBE = ("envdoctor.checks", "envdoctor.binary", "envdoctor.render.text", "envdoctor.render.markdown",
               "envdoctor.redact", "envdoctor.fix", "envdoctor.rules", "packaging", "rich", "elftools", "pefile")


def imported_by(statement: str) -> list[str]:
    code = (f"{statement}\nimport json, sys\n"
            # the packages and their modules (envdoctor.fix, not envdoctor.fix_choice: a part of the fact model)
            f"print(json.dumps(sorted(m for m in sys.modules if m in {AFTER_PROBE!r} "
            f"or m.startswith(tuple(p + '.' for p in {AFTER_PROBE!r})))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_the_check_command_imports_only_the_probe_before_probing():
    assert imported_by("import envdoctor.commands.check") == []


def test_the_probe_does_not_import_binary_forensics_to_start():
    assert imported_by("import envdoctor.probe") == []


def test_the_imports_thread_loads_what_comes_after_the_probe():
    # and the command module names exactly what it preloads (a module dropped from the list shows here)
    got = imported_by("from envdoctor.commands import check\nt, out = check.start_imports(); t.join()\n"
                      "assert out['tables'].rows('mmcv_consumer'), out")
    for name in ("envdoctor.rules", "envdoctor.checks", "envdoctor.binary", "envdoctor.render.text",
                 "envdoctor.redact", "rich"):
        assert name in got, name
