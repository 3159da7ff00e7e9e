"""Local servers for development, the demo and the tests: Kafka, S3Proxy, MLflow, Prefect, Prometheus and friends.

Every one is a ``process.LocalServer``: configured in a folder of its own, started in its own
process group, waited on until it answers, stopped by its PID; ``scorepipe NAME up|down|status``
leaves one running and finds it again. None is used in production, and nothing here is imported
by the packages that are.
"""
