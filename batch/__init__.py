"""The batch engine: score Parquet files into atomic outputs, rejects and quarantine, on a runner.

``engine.score_file`` scores one file; ``runners`` decide where files run (one after another in
this process, or on Dask) behind one ``Runner`` interface; ``run.run_batch`` resolves the models
and runs a whole input. Free of Prefect: ``flows.score_batch`` wraps it in a flow, and
``scorepipe score`` calls it directly. Nothing is imported here, so ``batch.settings`` stays light.
"""
