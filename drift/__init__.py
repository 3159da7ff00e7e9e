"""Evidently drift reports over the scoring core's reference sample (see the drift issue)."""
