"""The output layout every path writes and every reader relies on: folders, reserved columns, the event id.

One module, so a batch output, a live window, a report and a comparison agree on every name.
Folders starting with ``_`` sit beside the champion's outputs and are skipped by readers that
walk a partition.
"""

from __future__ import annotations

# Folders beside the outputs
SHADOW_DIR = "_shadow"  # a challenger's outputs (batch) or live window (stream), mirroring the champion's paths
REJECTED_DIR = "_rejected"  # rows (batch) or label messages (label sink) refused, with the reason of each
PARTS_DIR = "_parts"  # a large file's row ranges, scored on several workers, until joined into its output
QUARANTINE_DIR = "_quarantine"  # input files that could not be read, each with a ``.error.json``

# The columns a scorer adds to every row
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"  # one ``proba_<class>`` column per class
CONFIDENCE = "confidence"
MODEL_VERSION = "model_version"
SCORED_AT = "scored_at"
REJECT_REASON = "reject_reason"  # null for a scored row, why for a rejected one

# Lineage columns of batch outputs
FLOW_RUN_ID = "flow_run_id"
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
LINEAGE = (FLOW_RUN_ID, SOURCE_FILE, SOURCE_ROW)

# The stream's event id: the message key, the JSON field, the live window's and the labels' join column
EVENT_ID = "event_id"

# How a champion's row meets its shadow's: by event on the stream, by file and row in batch
STREAM_KEY = (EVENT_ID,)
BATCH_KEY = (SOURCE_FILE, SOURCE_ROW)
