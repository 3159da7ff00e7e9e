"""Finding Parquet inputs: a file, a folder of Hive-style partitions, or a glob."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from scoring.errors import SourceError


@dataclass(frozen=True)
class InputSet:
    """The Parquet files to score and the folder their output paths are relative to."""

    base: Path
    files: list[Path]

    def relative(self, path: Path) -> Path:
        return path.relative_to(self.base)


def discover_inputs(spec: str | Path) -> InputSet:
    """Resolve a file, a folder of partitions or a glob into Parquet files, sorted.

    Output paths keep Hive-style partition folders (``date=2026-11-24/``): the base is the
    nearest ancestor that is not itself a ``key=value`` folder.
    """
    text = str(spec)
    path = Path(text)
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        files, root = sorted(p for p in path.rglob("*.parquet") if _is_data_file(p, path)), path
    elif glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        root = Path(os.path.commonpath([p.parent for p in files])) if files else Path(".")
    else:
        raise SourceError(f"input {text!r} is neither a file, a folder nor a glob that matches anything")
    if not files:
        raise SourceError(f"input {text!r} holds no .parquet files")
    base = root
    while "=" in base.name:
        base = base.parent
    return InputSet(base=base, files=files)


def _is_data_file(path: Path, root: Path) -> bool:
    # Skip our own temporary files and Spark/Hive-style markers (_SUCCESS, _temporary/, .hidden).
    return not any(part.startswith((".", "_")) for part in path.relative_to(root).parts)
