"""Lumiflow's cache directory: generated demo data, analysis modules shipped to workers."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$LUMIFLOW_CACHE`` if set, else ``$XDG_CACHE_HOME/lumiflow`` or ``~/.cache/lumiflow``."""
    root = os.environ.get("LUMIFLOW_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "lumiflow"
