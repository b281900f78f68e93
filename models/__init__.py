"""Online models: failure prediction from delayed maintenance labels, anomaly and drift detection, fail-safes.

The stage reads :class:`~vigil.contracts.FeatureVector` and :class:`~vigil.contracts.MaintenanceEvent` messages
and writes :class:`~vigil.contracts.Prediction` and :class:`~vigil.contracts.DriftEvent` messages. The pure core
(:mod:`models.pipeline`) has no I/O; :mod:`models.service` wires it to Kafka and :mod:`models.evaluate` runs it
offline on the simulated fleet.
"""
