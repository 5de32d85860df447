"""netdef's version: one place, read by setup.py (without importing the package) and the CLI."""
__version__ = "0.2.0.dev0"
