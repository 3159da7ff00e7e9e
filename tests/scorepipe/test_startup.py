"""The command line answers at once and stops cleanly whenever it is told to, start-up included."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

import pytest

from devservers.process import free_port
from scorepipe.cli import parser
from tests.helpers import wait_for

HEAVY = {"sklearn", "pandas", "pyarrow", "numpy", "scipy", "kafka", "confluent_kafka", "prefect", "evidently", "mlflow"}


def commands(root: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser: ``()``, ``("models",)``, ``("models", "list")``..."""
    found = [prefix]
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, (*prefix, name))
    return found


def imported_by(*args: str) -> set[str]:
    """Top-level packages that ``scorepipe ARGS`` imports, as ``python -X importtime`` reports them."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "scorepipe.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize("command", commands(parser()), ids=lambda c: " ".join(c) or "scorepipe")
def test_help_imports_no_model_library_kafka_client_or_integration(command):
    imported = imported_by(*command, "--help")
    assert "scorepipe" in imported and "argparse" in imported  # the premise: the report was read
    assert not imported & HEAVY, f"`scorepipe {' '.join(command)} --help` imports {sorted(imported & HEAVY)}"


def catches(pid: int, number: int) -> bool:
    """Whether process ``pid`` has a handler installed for signal ``number`` (its SigCgt mask)."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(line for line in status if line.startswith("SigCgt:")).split()[1]
    return bool(int(mask, 16) >> (number - 1) & 1)


def test_a_stream_told_to_stop_during_start_up_exits_zero_saying_nothing_was_read(make_registry, tmp_path):
    registry = make_registry()
    env = {
        **os.environ,
        "SCOREPIPE_HOME": str(tmp_path / "home"),
        "SCOREPIPE_REGISTRY": str(registry.root),
        "SCOREPIPE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # never reached: it stops before
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "scorepipe.cli", "stream"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The premise: the handler is in place (about 0.1 s in), the model and its libraries not yet loaded.
        wait_for(lambda: catches(process.pid, signal.SIGTERM), timeout=60, what="the SIGTERM handler", interval=0.005)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "stopped before consuming" in output and "nothing was read" in output
