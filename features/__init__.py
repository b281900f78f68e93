"""Features: window contents -> :class:`vigil.contracts.FeatureVector`.

Pure and I/O-free: :mod:`features.aggregations` holds one small class per aggregation (``initialize / add /
result`` over small serialisable state, plus a vectorised ``compute`` used when a window closes), and
:mod:`features.vector` assembles one machine's window into a feature vector (missing sensors explicit, cross-sensor
features from the machine type, machine state ``off``); :func:`features.vector.window_engine` wires it into the
window engine. :mod:`features.service` is the Kafka feature worker (``vigil features``).
"""
