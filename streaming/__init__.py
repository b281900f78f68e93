"""Streaming: readings topics -> per-machine event-time windows -> feature vectors.

:mod:`streaming.windows` is the pure window engine (usable offline, no Kafka); :mod:`streaming.service` is the
Kafka worker around it (consumer group, dead letters, checkpointed state in a compacted changelog topic).
"""
