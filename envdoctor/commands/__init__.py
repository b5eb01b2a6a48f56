"""One module per CLI command: each takes plain arguments and returns an exit code."""
