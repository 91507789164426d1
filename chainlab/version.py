"""The version of chainlab (one place; the package root and the archive metadata read it)."""

__version__ = "0.1.0"
