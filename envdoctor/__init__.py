"""envdoctor: diagnose and fix broken deep-learning Python environments.

This module must stay import-free: ``envdoctor.compat`` is imported from a
``.pth`` hook at interpreter start-up.
"""

__version__ = "0.1.0"
