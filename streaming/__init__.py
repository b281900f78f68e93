"""Streaming: readings topics -> per-machine event-time windows -> feature vectors.

:mod:`streaming.windows` is the pure window engine (usable offline, no Kafka), given its feature builder by the
caller; the Kafka worker around it is :mod:`features.service` (consumer group, dead letters, checkpointed state
in a compacted changelog topic). Nothing here imports ``features``: imports flow streaming -> features.
"""
