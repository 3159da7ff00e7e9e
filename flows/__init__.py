"""Prefect only: the score-batch, drift-report and performance-report flows over the engines.

Each flow adds what Prefect gives (task runs, retries, artifacts, final states) and pushes its
figures; the work itself lives in ``batch/``, ``drift/`` and ``performance/``, which run the same
without a Prefect server.
"""
