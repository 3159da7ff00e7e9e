"""Finding Parquet inputs: a file, a folder of Hive-style partitions, or a glob; local or on S3."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from scoring.errors import SourceError
from scoring.storage import S3, Location, as_location, glob_files


@dataclass(frozen=True)
class InputSet:
    """The Parquet files to score and the folder their output paths are relative to."""

    base: Location
    files: list[Location]

    def relative(self, path: Location) -> PurePosixPath:
        return path.relative_to(self.base)


def discover_inputs(spec: str | os.PathLike[str] | Location) -> InputSet:
    """Resolve a file, a folder of partitions or a glob into Parquet files, sorted.

    Output paths keep Hive-style partition folders (``date=2026-11-24/``): the base is the
    nearest ancestor that is not itself a ``key=value`` folder.
    """
    location = as_location(spec)
    text = str(spec)
    try:
        kind = location.info().type
    except OSError as exc:
        raise SourceError(f"cannot read input {text!r}: {exc}") from exc
    if kind == pafs.FileType.File:
        files, root = [location], location.parent
    elif kind == pafs.FileType.Directory:
        files = [f for f in location.files() if f.name.endswith(".parquet") and _is_data_file(f, location)]
        root = location
    elif glob.has_magic(text):
        files = glob_files(text)
        root = _common_folder(files) if files else Location(".")
    else:
        raise SourceError(f"input {text!r} is neither a file, a folder nor a glob that matches anything")
    if not files:
        raise SourceError(f"input {text!r} holds no .parquet files")
    base = root
    while "=" in base.name:
        base = base.parent
    return InputSet(base=base, files=files)


def _common_folder(files: list[Location]) -> Location:
    common = os.path.commonpath([f.parent.path for f in files])
    return Location(S3 + common if files[0].is_s3 else common)


def _is_data_file(path: Location, root: Location) -> bool:
    # Skip our own temporary files and Spark/Hive-style markers (_SUCCESS, _temporary/, .hidden).
    return not any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def latest_partition(folder: str | os.PathLike[str] | Location) -> Location:
    """The newest ``date=...`` partition under ``folder`` (local or ``s3://``), or ``folder`` if it has none."""
    folder = as_location(folder)
    partitions = [n for n in folder.child_names() if n.startswith("date=") and (folder / n).is_dir()]
    return folder / max(partitions) if partitions else folder


def existing_folder_or_file(spec: str | os.PathLike[str] | Location, what: str) -> Location:
    """``spec`` as a Location that exists (local or ``s3://``); ``SourceError`` naming ``what`` otherwise."""
    location = as_location(spec)
    try:
        found = location.exists()
    except OSError as exc:
        raise SourceError(f"cannot read {what} at {location}: {exc}") from exc
    if not found:
        raise SourceError(f"no {what} at {location}")
    return location


def read_parquet(spec: str | os.PathLike[str] | Location) -> pd.DataFrame:
    """Every row of a Parquet file, folder of partitions or glob (local or ``s3://``) as one frame."""
    inputs = discover_inputs(spec)
    try:
        tables = [pq.read_table(f.path, filesystem=f.fs) for f in inputs.files]
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read {spec}: {exc}") from exc
    return pa.concat_tables(tables, promote_options="default").to_pandas()
