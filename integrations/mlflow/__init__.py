"""MLflow: the client factory, importing models, following an alias, logging runs back.

``client`` builds the one MLflow client; ``models`` downloads, loads (trusted types only) and
turns a logged model into a bundle; ``source`` follows an alias for the watcher; ``tracking`` logs
trained models and reports back as runs.
"""
