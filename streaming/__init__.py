"""Kafka entry point over the scoring core: decode micro-batches, score them, publish the results.

``clients`` builds every Kafka client from ``StreamSettings``; ``ledger`` is the pure at-least-once
bookkeeping (batches in flight, ordered commits, rewinds, hand-over); ``sinks`` take results
(predictions, dead letters, live window) and hand back their deliveries; ``shadow`` scores a
challenger apart; ``consumer`` is the loop that ties them; ``topics`` creates and reads topics.
"""
