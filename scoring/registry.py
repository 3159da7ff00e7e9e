"""A model registry, in a local folder or under ``s3://bucket/prefix``: numbered versions, a manifest, aliases.

Layout::

    ROOT/index.json            versions (file hashes, metrics, note), alias histories, the canary plan
    ROOT/versions/000003/      one bundle per version, never changed once written
    ROOT/.lock                 serialises writers

Every change to ``index.json`` replaces it whole (a temporary file renamed into place locally,
one PUT on S3) under an exclusive lock, so readers always see a whole index and writers never
lose each other's updates. The index is the commit point: a version folder the index does not
name is never loaded, and every file of a version is checked against its sha256 before use.

The lock is ``flock`` on a local ``.lock`` file. On S3 it is a ``.lock`` object created with a
conditional write (``If-None-Match: *``): only one writer's create succeeds, the others retry
until it is deleted. A lock left by a writer that died is taken over once it is older than
``LOCK_STALE_SECONDS``; every registry write takes well under that.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import socket
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scoring.bundle import ModelBundle, read_bundle, read_info, write_bundle
from scoring.canary import CanaryPlan
from scoring.errors import RegistryError
from scoring.storage import Location, as_location

if TYPE_CHECKING:
    from scoring.compiled import TreeCompiler

ALIASES = ("champion", "challenger")
INDEX_FILE = "index.json"
LOCK_FILE = ".lock"
CANARY_LOG_DIR = "canary-log"  # one file per decision, a folder per plan
LOCK_STALE_SECONDS = 120.0
LOCK_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class VersionInfo:
    """What the manifest records about one registered version."""

    version: int
    created_at: str
    files: dict[str, str]
    metrics: dict[str, float]
    note: str
    aliases: tuple[str, ...]
    origin: dict[str, Any] | None = None  # where an imported version came from (MLflow name, version, digest)


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

    def __init__(self, root: Path | str | Location) -> None:
        self.root = as_location(root)

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

    def index_stamp(self) -> tuple[int, int, int] | str | None:
        """A cheap fingerprint of the index: it changes with every write.

        Locally (inode, size, mtime): writers rename a new file over the index, so a new inode
        means a new index. On S3 the sha256 of the (small) index object, read in one GET, since
        object times have one-second resolution. Watchers compare stamps instead of parsing.
        """
        index = self.root / INDEX_FILE
        try:
            if index.is_s3:
                return hashlib.sha256(index.read_bytes()).hexdigest()
            stat_result = index.local_path().stat()
        except FileNotFoundError:
            return None
        return (stat_result.st_ino, stat_result.st_size, stat_result.st_mtime_ns)

    def load(self, ref: str | int = "champion") -> LoadedModel:
        """Load a version after checking every artifact against the manifest."""
        index = self._read_index()
        version = self._resolve(index, ref)
        files = index["versions"][str(version)]["files"]
        return LoadedModel(version=version, bundle=read_bundle(self._version_dir(version), files))

    def bundle_info(self, ref: str | int) -> dict[str, Any]:
        """A version's provenance (trainer, source, MLflow lineage), hash-checked, without loading its model."""
        index = self._read_index()
        version = self._resolve(index, ref)
        return read_info(self._version_dir(version), index["versions"][str(version)]["files"])

    # -- writing -----------------------------------------------------------------------------

    def find(self, **origin: str | None) -> list[int]:
        """Versions whose recorded origin has every given key and value, oldest first.

        >>> import tempfile; Registry(Path(tempfile.mkdtemp())).find(kind="mlflow", name="fraud")
        []
        """
        index = self._read_index()
        return _matching(index, origin)

    def register(
        self,
        bundle: ModelBundle,
        *,
        note: str = "",
        origin: dict[str, str | None] | None = None,
        trees: TreeCompiler | None = None,
    ) -> int:
        """Store ``bundle`` as a new immutable version and return its number.

        ``origin`` records where an imported model came from (an MLflow name, version and
        artifact digest). A version with the same origin is not stored twice: two processes
        following the same MLflow alias both get the one version whichever imports first.
        ``trees`` compiles the model's trees into the version (before the lock: it takes seconds).
        """
        if origin and (same := self.find(**origin)):
            return same[0]
        if trees is not None:
            bundle = trees.attach(bundle)
        with self._locked() as index:
            if origin and (same := _matching(index, origin)):
                return same[0]
            # A folder left by a writer that died before updating the index still claims its number.
            on_disk = (self.root / "versions").child_names()
            numbers = [*(int(v) for v in index["versions"]), *(int(p) for p in on_disk if p.isdigit())]
            version = max(numbers, default=0) + 1
            target = self._version_dir(version)
            hashes = _write_local_version(bundle, target) if not target.is_s3 else write_bundle(bundle, target)
            index["versions"][str(version)] = {
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": hashes,
                "metrics": bundle.metrics,
                "note": note,
                **({"origin": origin} if origin else {}),
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

    # -- canary releases -----------------------------------------------------------------------

    def canary(self) -> CanaryPlan | None:
        """The canary plan, running or ended (None if there never was one)."""
        data = self._read_index().get("canary")
        return CanaryPlan.from_json(data) if data else None

    def start_canary(self, ref: str | int, **plan: Any) -> CanaryPlan:
        """Start a canary of ``ref`` against the champion now; refused while another plan runs."""
        with self._locked() as index:
            current = index.get("canary")
            if current and current.get("state") == "running":
                raise RegistryError(
                    f"a canary of v{current['canary']} is running: promote or abort it first (`scorepipe canary abort`)"
                )
            champion = self._resolve(index, "champion")
            started = CanaryPlan(canary=self._resolve(index, ref), champion=champion, **plan)
            index["canary"] = started.to_json()
        return started

    def update_canary(
        self,
        change: Callable[[CanaryPlan], CanaryPlan],
        *,
        decision: dict[str, Any] | None = None,
        holder: str | None = None,
        expected: CanaryPlan | None = None,
    ) -> CanaryPlan:
        """Apply ``change`` to the plan under the lock; the plan it returns is kept, with ``decision`` in the log.

        A controller passes its ``holder`` id and the plan it judged (``expected``): the change is
        refused unless it still holds the lease and the plan is still that one, running (an operator's
        abort or a new plan meanwhile wins), so two controllers never both act on one judgement.
        """
        with self._locked() as index:
            if not index.get("canary"):
                raise RegistryError("no canary plan: start one with `scorepipe canary start VERSION`")
            if holder is not None and not _holds(index, holder):
                raise RegistryError(f"controller {holder} no longer holds the canary lease: it may not act")
            current = CanaryPlan.from_json(index["canary"])
            if expected is not None and not (current.same_as(expected) and current.state == "running"):
                raise RegistryError("the canary plan changed while it was judged: the judgement is dropped")
            plan = change(current)
            index["canary"] = plan.to_json()
            if decision is not None:
                self._log_decision(index, decision)
        return plan

    def canary_log(self, plan: CanaryPlan | None = None) -> list[dict[str, Any]]:
        """The decisions taken on ``plan`` (else on every plan), oldest first: the audit log.

        Each decision is a file of its own under ``canary-log/<plan>/``, not a list in the index: the
        index, which every scorer's watcher reads every few seconds, stays the same size however long
        a rollout runs.
        """
        root = self.root / CANARY_LOG_DIR
        plans = [_plan_key(plan.started_at)] if plan is not None else root.child_names()
        return [json.loads(f.read_bytes()) for key in plans for f in (root / key).files()]

    def take_canary_lease(self, holder: str, seconds: float) -> bool:
        """Take or renew the lease that lets one controller act on the plan; False while another holds it."""
        with self._locked() as index:
            lease = index.get("canary_lease") or {}
            if lease.get("holder") not in (None, holder) and float(lease.get("until", 0)) > time.time():
                return False
            index["canary_lease"] = {"holder": holder, "until": time.time() + seconds}
        return True

    def release_canary_lease(self, holder: str) -> None:
        with self._locked() as index:
            if (index.get("canary_lease") or {}).get("holder") == holder:
                index.pop("canary_lease")

    def promote_canary(
        self,
        reason: str,
        *,
        decision: dict[str, Any] | None = None,
        holder: str | None = None,
        expected: CanaryPlan | None = None,
    ) -> CanaryPlan:
        """The running canary becomes champion (the old one stays one ``rollback`` away); the plan ends.

        Refused if the champion alias moved during the plan (a rollback would then go elsewhere than
        the plan says), and, for a controller, as ``update_canary`` refuses.
        """
        with self._locked() as index:
            data = index.get("canary")
            if not data or data.get("state") != "running":
                raise RegistryError("no running canary to promote")
            if holder is not None and not _holds(index, holder):
                raise RegistryError(f"controller {holder} no longer holds the canary lease: it may not act")
            if expected is not None and not CanaryPlan.from_json(data).same_as(expected):
                raise RegistryError("the canary plan changed while it was judged: the judgement is dropped")
            champion = index["aliases"].get("champion") or [None]
            if champion[-1] != data["champion"]:
                raise RegistryError(
                    f"the champion moved from v{data['champion']} to v{champion[-1]} during the plan: "
                    "not promoted (start a new plan against the new champion)"
                )
            if decision is not None:
                self._log_decision(index, decision)
            plan = CanaryPlan.from_json(data)
            history = index["aliases"].setdefault("champion", [])
            if not history or history[-1] != plan.canary:
                history.append(plan.canary)
            ended = plan.with_changes(state="promoted", weight=0.0, reason=reason)
            index["canary"] = ended.to_json()
        return ended

    # -- internals ---------------------------------------------------------------------------

    def _log_decision(self, index: dict[str, Any], decision: dict[str, Any]) -> None:
        """``decision`` as the next file of the running plan's log (called under the lock, before the index)."""
        number = int(index.get("canary_log_next", 0))
        folder = self.root / CANARY_LOG_DIR / _plan_key(index["canary"]["started_at"])
        (folder / f"{number:08d}.json").write_bytes(json.dumps(decision, indent=1, sort_keys=True).encode())
        index["canary_log_next"] = number + 1

    def _version_dir(self, version: int) -> Location:
        return self.root / "versions" / f"{version:06d}"

    def _read_index(self) -> dict[str, Any]:
        path = self.root / INDEX_FILE
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return {"versions": {}, "aliases": {}}
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"cannot read registry index {path}: {exc}") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Yield the index under an exclusive lock and write it back whole on success."""
        lock = _s3_lock(self.root / LOCK_FILE) if self.root.is_s3 else _file_lock(self.root)
        with lock:
            index = self._read_index()
            yield index
            (self.root / INDEX_FILE).write_bytes(json.dumps(index, indent=2, sort_keys=True).encode())

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
            origin=entry.get("origin"),
        )


def _plan_key(started_at: str) -> str:
    """A plan's folder name: its start time's digits (YYYYMMDDHHMMSSffffff), which sort as the plans began."""
    return "".join(c for c in started_at if c.isdigit())[:20]


def _holds(index: dict[str, Any], holder: str) -> bool:
    lease = index.get("canary_lease") or {}
    return lease.get("holder") == holder and float(lease.get("until", 0)) > time.time()


def _matching(index: dict[str, Any], origin: dict[str, str | None]) -> list[int]:
    found = []
    for number, entry in index["versions"].items():
        recorded = entry.get("origin") or {}
        if all(recorded.get(key) == value for key, value in origin.items()):
            found.append(int(number))
    return sorted(found) if origin else []


def _write_local_version(bundle: ModelBundle, target: Location) -> dict[str, str]:
    """Write a version beside its final name, make it read-only, and rename it into place."""
    versions = target.parent.local_path()
    versions.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=versions))
    try:
        hashes = write_bundle(bundle, Location(staging))
        for path in staging.iterdir():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        staging.rename(target.local_path())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return hashes


@contextlib.contextmanager
def _file_lock(root: Location) -> Iterator[None]:
    folder = root.local_path()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _s3_lock(lock: Location, *, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the registry's lock object, created by a conditional write; delete it when done."""
    owner = json.dumps({"owner": f"{socket.gethostname()}/{uuid.uuid4().hex}", "since": time.time()}).encode()
    deadline = time.monotonic() + wait
    pause = 0.05
    while not lock.create_exclusive(owner):
        _break_if_stale(lock)
        if time.monotonic() > deadline:
            raise RegistryError(f"the registry lock {lock} is held by another writer; waited {wait:.0f}s")
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if lock.read_bytes() == owner:  # never delete a lock another writer took over
                lock.unlink()


def _break_if_stale(lock: Location) -> None:
    """Delete a lock whose writer died: it is older than any registry write takes."""
    try:
        held = json.loads(lock.read_bytes())
    except (OSError, ValueError):  # gone, or deleted while being read: its holder let go, so try again
        return
    if time.time() - float(held.get("since", 0)) > LOCK_STALE_SECONDS:
        with contextlib.suppress(OSError):
            lock.unlink()
