"""The ``scorepipe`` command line (``scorepipe.cli``), its rendering and the demo.

The local servers they start (Kafka, S3Proxy, MLflow, Prefect...) live in ``devservers``.
"""
