"""Plant generators independent of Vigil's built-in simulator (``ingest/simulator``).

Their physics, failure modes and export formats differ from what Vigil's models were tuned on: they score Vigil
on plants it has never seen and write the foreign-format files (historian and maintenance-system exports, a plant
configuration, the ground truth) that the tutorial hands a new user. See ``README.md`` beside this file.
"""
