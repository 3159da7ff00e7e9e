"""Model performance against delayed labels: join labels to scored rows, measure, report (Evidently)."""
