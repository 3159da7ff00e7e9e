"""Rendering helpers: what a person reads in a table cell."""

from __future__ import annotations

from scorepipe.render import short_reason


def test_a_quarantine_reason_is_its_first_whole_sentence():
    error = (
        "ArrowInvalid: Parquet magic bytes not found in footer. Either the file is corrupted or this is not a "
        "parquet file."
    )
    assert short_reason(error) == "ArrowInvalid: Parquet magic bytes not found in footer."


def test_a_long_sentence_is_cut_between_words_and_says_so():
    error = "SchemaError: " + " ".join(f"column_{i} missing" for i in range(40))
    shown = short_reason(error, limit=60)
    assert len(shown) <= 60 and shown.endswith("…")
    assert error.startswith(shown[:-1]) and error[len(shown) - 1] == " "  # the cut falls on a space


def test_a_short_reason_is_kept_whole():
    assert short_reason("OSError: disk full") == "OSError: disk full."
