"""Evidently drift reports: scored data (batch outputs or the live window) against the training reference."""
