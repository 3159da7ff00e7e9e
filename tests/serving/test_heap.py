"""The server's heap freeze: what is alive at start leaves the collector's passes; a reload freezes again."""

from __future__ import annotations

import gc
import weakref

import pytest

from scoring.watcher import ReloadEvent
from serving.heap import freeze_heap, refreeze_after_reload


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.fixture(autouse=True)
def unfrozen():
    yield
    gc.unfreeze()


def test_what_is_alive_at_start_is_frozen_and_a_dropped_cycle_is_freed_by_the_next_freeze():
    kept = Node()
    freeze_heap()
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # out of every generation the collector walks
    dropped = weakref.ref(kept)
    del kept
    gc.collect()
    assert dropped() is not None  # frozen: a full collection does not look at it
    refreeze_after_reload(ReloadEvent("champion", 1, 2, ok=False, reason="refused"))
    assert dropped() is not None  # a refused reload changes nothing
    refreeze_after_reload(ReloadEvent("champion", 1, 2, ok=True))
    assert dropped() is None


def test_the_app_freezes_its_heap_at_start_and_unfreezes_it_at_stop(make_registry, tmp_path):
    from fastapi.testclient import TestClient

    from scorepipe.settings import Settings
    from serving.app import build_app

    gc.unfreeze()
    app, watcher = build_app(Settings(home=tmp_path / "home", registry=make_registry().root))
    try:
        assert gc.get_freeze_count() == 0
        with TestClient(app) as client:
            assert gc.get_freeze_count() > 0
            assert client.get("/v2/health/live").status_code == 200
        assert gc.get_freeze_count() == 0
    finally:
        watcher.stop()
