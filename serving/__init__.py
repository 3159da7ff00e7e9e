"""Online scoring over HTTP: the Open Inference Protocol V2 and a simple JSON API on the same Scorer."""
