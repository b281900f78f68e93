"""The degrading-fleet simulator: a pure, seeded fleet model (:mod:`ingest.simulator.fleet`) and the OPC UA
server that serves it (:mod:`ingest.simulator.server`, ``vigil simulate``)."""
