"""The ``scorepipe`` command line (``scorepipe.cli``), its rendering, the demo, and local servers.

The servers (Kafka, S3Proxy, Prefect) are for development, the demo and the tests.
"""
