"""Kafka entry point over the scoring core (see the streaming issue): decode, score, publish."""
