"""The ``scorepipe`` command line and the services it starts for demos and tests."""
