"""The netdef language's grammar, shipped as package data (setup.py: grammar/*.lark)."""
from pathlib import Path

NETDEF_GRAMMAR = Path(__file__).with_name("netdef.lark")
