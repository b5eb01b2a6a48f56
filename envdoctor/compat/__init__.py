"""envdoctor compat layer (placeholder docstring, filled below)."""
