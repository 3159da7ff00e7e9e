"""Prefect flows over the scoring core: thin wrappers that load Parquet, score it, write it back."""
