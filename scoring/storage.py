"""Where scorepipe reads and writes: a local path or ``s3://bucket/prefix``, behind one small type.

pyarrow's filesystems do the data I/O (Parquet streams, listings, copies). On S3 the endpoint,
region and credentials come from the usual AWS variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, or a profile), read by pyarrow and boto3
themselves, never by scorepipe and never from the repository.

What "atomic" means here:
- ``write_bytes`` makes an object appear whole or not at all: a temporary file renamed into place
  locally, one ``PutObject`` on S3 (an object is never visible half-written).
- ``create_exclusive`` creates an S3 object only if it does not exist yet, by a conditional write
  (``If-None-Match: *``). The registry builds its S3 lock on it (locally it uses ``flock``).
- Streams (Parquet outputs) are written under a temporary name and moved into place on success:
  a rename locally, a server-side copy on S3 (the copy appears whole; a failed write leaves only
  the temporary object, which is deleted).
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import os
import uuid
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import pyarrow.fs as pafs

from scoring.errors import SourceError

S3 = "s3://"


class Location:
    """A file or folder on the local disk or in an S3 bucket; what ``Path`` is, for both.

    >>> (Location("s3://bucket/scored") / "date=2026-11-27" / "part-0.parquet").key
    'scored/date=2026-11-27/part-0.parquet'
    >>> str(Location("data/scored") / "x.parquet")
    'data/scored/x.parquet'
    """

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        text = os.fspath(uri)
        if isinstance(uri, PurePath) and text.startswith("s3:/"):
            raise SourceError(f"{text!r}: a Path folds s3:// into s3:/; pass S3 locations as text")
        if text.startswith(S3):
            bucket_and_key = text[len(S3) :].strip("/")
            if not bucket_and_key:
                raise SourceError(f"{text!r} names no bucket")
            self.uri = S3 + str(PurePosixPath(bucket_and_key))
        else:
            self.uri = str(Path(text))

    # -- naming ----------------------------------------------------------------------------

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith(S3)

    @property
    def path(self) -> str:
        """The path in ``fs``: absolute locally, ``bucket/key`` on S3."""
        return self.uri[len(S3) :] if self.is_s3 else os.path.abspath(self.uri)

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0] if self.is_s3 else ""

    @property
    def key(self) -> str:
        return self.path.split("/", 1)[1] if self.is_s3 and "/" in self.path else ""

    @property
    def name(self) -> str:
        return PurePosixPath(self.uri).name

    @property
    def parent(self) -> Location:
        if self.is_s3 and "/" not in self.path:
            return self
        return Location(S3 + str(PurePosixPath(self.path).parent)) if self.is_s3 else Location(Path(self.uri).parent)

    @property
    def parents(self) -> list[Location]:
        """Ancestors, nearest first, up to the filesystem root or the bucket."""
        found: list[Location] = []
        current = self.parent
        while current != (found[-1] if found else self):
            found.append(current)
            current = current.parent
        return found

    def __truediv__(self, part: str | os.PathLike[str]) -> Location:
        if self.is_s3:
            return Location(f"{self.uri}/{PurePosixPath(os.fspath(part))}")
        return Location(Path(self.uri) / part)

    def with_name(self, name: str) -> Location:
        return self.parent / name

    def relative_to(self, base: Location) -> PurePosixPath:
        return PurePosixPath(self.path).relative_to(PurePosixPath(base.path))

    def temporary_sibling(self) -> Location:
        """A hidden name beside this one, for writing before the move into place."""
        return self.with_name(f".{self.name}.{uuid.uuid4().hex}.tmp")

    def local_path(self) -> Path:
        if self.is_s3:
            raise SourceError(f"{self.uri} is not on the local disk")
        return Path(self.uri)

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __fspath__(self) -> str:
        return str(self.local_path())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.path == self.path and other.is_s3 == self.is_s3

    def __hash__(self) -> int:
        return hash((self.is_s3, self.path))

    def __lt__(self, other: Location) -> bool:
        return self.uri < other.uri

    def __reduce__(self) -> tuple[Any, ...]:
        return (Location, (self.uri,))  # the filesystem is rebuilt where it is unpickled (a Dask worker)

    # -- filesystem ------------------------------------------------------------------------

    @functools.cached_property
    def fs(self) -> pafs.FileSystem:
        if not self.is_s3:
            return _LOCAL
        # from_uri, unlike the bare constructor, honours AWS_ENDPOINT_URL as well as the region and keys
        filesystem, _ = pafs.FileSystem.from_uri(f"{S3}{self.bucket}")
        return filesystem

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def mkdir(self) -> None:
        """Create this folder and its parents (nothing to do on S3, where folders are key prefixes)."""
        if not self.is_s3:
            Path(self.uri).mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Location]:
        """Every file under this folder, recursively, sorted."""
        selector = pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
        found = [i.path for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]
        return sorted(self / PurePosixPath(p).relative_to(PurePosixPath(self.path)) for p in found)

    def child_names(self) -> list[str]:
        """Names of the files and folders directly in this folder (key prefixes on S3), sorted."""
        selector = pafs.FileSelector(self.path, recursive=False, allow_not_found=True)
        return sorted(PurePosixPath(i.path).name for i in self.fs.get_file_info(selector))

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def write_bytes(self, data: bytes) -> None:
        """Write ``data`` so that readers see the old object or the new one whole, never a part."""
        if self.is_s3:
            _s3_client().put_object(Bucket=self.bucket, Key=self.key, Body=data)
            return
        self.parent.mkdir()
        tmp = self.temporary_sibling()
        with open(tmp.uri, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp.uri, self.uri)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def create_exclusive(self, data: bytes) -> bool:
        """Create this S3 object with ``data`` only if it does not exist; False if it already did."""
        from botocore.exceptions import ClientError

        try:
            _s3_client().put_object(Bucket=self.bucket, Key=self.key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            # 412: it exists; 409: another conditional write to the same key is in progress
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return False
            raise
        return True

    def unlink(self, missing_ok: bool = True) -> None:
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def move_to(self, target: Location) -> None:
        """Put this file at ``target`` (same store): a rename locally, a server-side copy on S3."""
        self.fs.move(self.path, target.path)

    def copy_to(self, target: Location) -> None:
        """Copy this file to ``target``, across stores if need be (local input, S3 quarantine)."""
        target.parent.mkdir()
        pafs.copy_files(self.path, target.path, source_filesystem=self.fs, destination_filesystem=target.fs)


_LOCAL = pafs.LocalFileSystem()


def as_location(spec: str | os.PathLike[str] | Location) -> Location:
    return spec if isinstance(spec, Location) else Location(spec)


def glob_files(pattern: str) -> list[Location]:
    """Files matching a glob, locally (``glob``) or on S3 (a listing of the prefix before the first wildcard)."""
    if not pattern.startswith(S3):
        return sorted(Location(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    fixed = pattern[: min(pattern.find(c) for c in "*?[" if c in pattern)]
    prefix = Location(fixed.rsplit("/", 1)[0])
    return [f for f in prefix.files() if fnmatch.fnmatchcase(f.uri, pattern)]


@functools.cache
def _s3_client() -> Any:
    """The process's boto3 S3 client, built on first use.

    boto3 reads its configuration (``AWS_ENDPOINT_URL``, region, keys or a profile) itself, as pyarrow
    does for the same files; the core reads no environment variable. Credentials that expire are
    refreshed by the client.
    """
    import boto3

    return boto3.client("s3")


Where = str | os.PathLike[str] | Location
"""A local path or an ``s3://`` location, as text, a ``Path`` or a ``Location``."""
