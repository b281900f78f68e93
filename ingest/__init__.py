"""Ingest: collectors (OPC UA, MQTT, file replay) and the degrading-fleet simulator, publishing to Kafka.

The first stage of the pipeline: everything that turns a plant's signals into :class:`vigil.contracts.Reading`
messages on the readings topic (key = machine id) and maintenance records on the maintenance topic.
Submodules are imported on demand; nothing heavy happens at import time.
"""
