"""A model registry on the local filesystem: immutable numbered versions, a manifest, aliases.

Layout::

    ROOT/index.json            versions (file hashes, metrics, note) and alias histories
    ROOT/versions/000003/      one bundle per version, read-only once written
    ROOT/.lock                 serialises writers

Every change to ``index.json`` is a write to a temporary file followed by an atomic rename,
under an exclusive lock, so readers always see a whole index and writers never lose each
other's updates.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scoring.bundle import ModelBundle, read_bundle, write_bundle
from scoring.errors import RegistryError

ALIASES = ("champion", "challenger")
INDEX_FILE = "index.json"


@dataclass(frozen=True)
class VersionInfo:
    """What the manifest records about one registered version."""

    version: int
    created_at: str
    files: dict[str, str]
    metrics: dict[str, float]
    note: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class LoadedModel:
    """A verified bundle and the version it was loaded as."""

    version: int
    bundle: ModelBundle


class Registry:
    """Versioned, hash-checked storage for model bundles.

    >>> import tempfile; registry = Registry(Path(tempfile.mkdtemp()))
    >>> registry.versions()
    []
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- reading -----------------------------------------------------------------------------

    def versions(self) -> list[VersionInfo]:
        index = self._read_index()
        return [self._info(index, int(v)) for v in sorted(index["versions"], key=int)]

    def info(self, ref: str | int) -> VersionInfo:
        index = self._read_index()
        return self._info(index, self._resolve(index, ref))

    def aliases(self) -> dict[str, int]:
        index = self._read_index()
        return {alias: history[-1] for alias, history in index["aliases"].items() if history}

    def resolve(self, ref: str | int) -> int:
        """Turn ``champion``, ``challenger``, ``latest``, ``v3`` or ``3`` into a version number."""
        return self._resolve(self._read_index(), ref)

    def index_stamp(self) -> tuple[int, int, int] | None:
        """A cheap fingerprint of the index (inode, size, mtime): it changes with every write.

        Writers replace the index by renaming a new file over it, so a new inode means a new index;
        watchers compare stamps instead of re-reading and parsing the index on every check.
        """
        try:
            stat_result = (self.root / INDEX_FILE).stat()
        except FileNotFoundError:
            return None
        return (stat_result.st_ino, stat_result.st_size, stat_result.st_mtime_ns)

    def load(self, ref: str | int = "champion") -> LoadedModel:
        """Load a version after checking every artifact against the manifest."""
        index = self._read_index()
        version = self._resolve(index, ref)
        files = index["versions"][str(version)]["files"]
        return LoadedModel(version=version, bundle=read_bundle(self._version_dir(version), files))

    # -- writing -----------------------------------------------------------------------------

    def register(self, bundle: ModelBundle, *, note: str = "") -> int:
        """Store ``bundle`` as a new immutable version and return its number."""
        with self._locked() as index:
            versions_dir = self.root / "versions"
            versions_dir.mkdir(parents=True, exist_ok=True)
            # A folder left by a writer that died before updating the index still claims its number.
            on_disk = (int(p.name) for p in versions_dir.iterdir() if p.name.isdigit())
            version = max([*(int(v) for v in index["versions"]), *on_disk], default=0) + 1
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=versions_dir))
            try:
                hashes = write_bundle(bundle, staging)
                for path in staging.iterdir():
                    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                staging.rename(self._version_dir(version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            index["versions"][str(version)] = {
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": hashes,
                "metrics": bundle.metrics,
                "note": note,
            }
        return version

    def promote(self, ref: str | int, alias: str = "champion") -> int | None:
        """Point ``alias`` at a version; return the version it pointed at before, if any."""
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
        with self._locked() as index:
            version = self._resolve(index, ref)
            history = index["aliases"].setdefault(alias, [])
            previous = history[-1] if history else None
            if previous != version:
                history.append(version)
        return previous

    def rollback(self, alias: str = "champion") -> int:
        """Point ``alias`` back at the version it pointed at before the last promotion."""
        with self._locked() as index:
            history = index["aliases"].get(alias, [])
            if len(history) < 2:
                raise RegistryError(f"cannot roll back {alias!r}: it has no earlier version (history {history})")
            history.pop()
            return int(history[-1])

    # -- internals ---------------------------------------------------------------------------

    def _version_dir(self, version: int) -> Path:
        return self.root / "versions" / f"{version:06d}"

    def _read_index(self) -> dict[str, Any]:
        path = self.root / INDEX_FILE
        if not path.exists():
            return {"versions": {}, "aliases": {}}
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"cannot read registry index {path}: {exc}") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Yield the index under an exclusive lock and write it back atomically on success."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = self._read_index()
            yield index
            fd, tmp = tempfile.mkstemp(prefix=".index-", dir=self.root)
            with os.fdopen(fd, "w") as handle:
                json.dump(index, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.root / INDEX_FILE)

    def _resolve(self, index: dict[str, Any], ref: str | int) -> int:
        versions = index["versions"]
        if not versions:
            raise RegistryError(f"the registry at {self.root} has no model yet; run `scorepipe train` first")
        text = str(ref).strip()
        if text == "latest":
            return max(int(v) for v in versions)
        if text in index["aliases"] and index["aliases"][text]:
            return int(index["aliases"][text][-1])
        if text in ALIASES:
            raise RegistryError(f"alias {text!r} points at no version yet; promote one with `scorepipe models promote`")
        number = text[1:] if text.lower().startswith("v") else text
        if number.isdigit() and number.lstrip("0") in versions:
            return int(number)
        known = ", ".join(sorted(versions, key=int))
        raise RegistryError(f"unknown model {text!r}: versions are {known}; aliases are {', '.join(ALIASES)}, latest")

    def _info(self, index: dict[str, Any], version: int) -> VersionInfo:
        entry = index["versions"][str(version)]
        aliases = tuple(a for a, h in index["aliases"].items() if h and h[-1] == version)
        return VersionInfo(
            version=version,
            created_at=entry["created_at"],
            files=entry["files"],
            metrics=entry["metrics"],
            note=entry.get("note", ""),
            aliases=aliases,
        )
