"""Helpers shared by the benchmark scripts: locating the shared data, output files."""

import os
import platform
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def data_dir():
    """``$SKAL_DATA_DIR`` or ``../shared/data`` next to the repository."""
    return Path(os.environ.get("SKAL_DATA_DIR", REPO.parent / "shared" / "data"))


def require(path):
    path = Path(path)
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (set SKAL_DATA_DIR or pass --data)")
    return path


def environment():
    """Machine facts recorded with every benchmark result."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine()}
