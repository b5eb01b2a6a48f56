"""Renderers: turn a Report into text, JSON or Markdown. They compute nothing."""
