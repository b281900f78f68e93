"""The OPC UA collector: an asyncua client that turns subscribed or polled variables into Readings and Gaps.

:class:`~ingest.opcua.collector.OpcUaCollector` is an async context manager and async iterator of
``Reading | Gap``; :func:`~ingest.opcua.runner.run_source` couples it to the Validator and the KafkaPublisher;
``vigil collect opcua`` runs it (:func:`ingest.opcua.runner.main`).
"""
