"""The systems scorepipe plugs into beside its core: model stores and trackers (MLflow).

Each integration is a package of its own that the entry points wire in; the core (``scoring``)
imports none of them, which the import contracts enforce.
"""
