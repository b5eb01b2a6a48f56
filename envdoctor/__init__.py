"""envdoctor: diagnose and fix broken deep-learning environments."""
