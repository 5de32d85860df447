"""Shared test fixtures. Reference data lives in ../shared (beside the checkout, never
copied here); tests that need it skip with a reason when it is absent."""
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NETDEF_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "caffe-corpus"
GOLDEN = SHARED / "caffe-golden"

needs_shared = pytest.mark.skipif(not GOLDEN.is_dir(), reason="../shared/caffe-golden is absent "
                                  "(reference data beside the checkout; CI always has it)")


def shared_tool(name):
    """Import ../shared/tools/<name>.py (check_golden, caffe_weights)."""
    path = SHARED / "tools" / (name + ".py")
    spec = importlib.util.spec_from_file_location("shared_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
