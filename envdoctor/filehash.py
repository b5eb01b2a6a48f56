"""A file's sha256, read in blocks: the one digest the build cache and the fix transaction both compare.

A leaf (stdlib only) so that build/ and fix/ can share it without either importing the other.
"""

from __future__ import annotations

import hashlib
import os
from typing import Union


def sha256_file(path: Union[str, "os.PathLike[str]"]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
