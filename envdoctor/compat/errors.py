"""Errors shared by the compat modules (kept here so every op family raises the same types)."""


class CompatUnsupportedError(RuntimeError):
    """A case the requested backend cannot compute exactly."""
