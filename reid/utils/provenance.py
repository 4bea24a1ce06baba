"""Where a measured figure came from: the commit of the code that produced it."""

from __future__ import annotations

import os
import subprocess


def source_commit(repo: str | os.PathLike) -> str:
    """Short hash of ``repo``'s HEAD, with ``+changes`` when tracked files differ from it, or
    ``unknown`` outside a git checkout: benchmark rows name the code they measured."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")
