"""The package version (one home: pyproject.toml's version is the same string)."""

__version__ = "0.1.0"
