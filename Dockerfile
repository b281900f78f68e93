# syntax=docker/dockerfile:1
# Vigil: one image for every service (`vigil simulate|collect|features|models|alerts ...`).
# Stage 1 builds wheels for Vigil and all its dependencies; stage 2 installs only those wheels into a slim
# runtime that runs as the unprivileged user `vigil` (no compilers, no pip cache, no source tree).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, so editing the code does not re-download them (the metadata is all pip needs here).
COPY pyproject.toml README.md* ./
COPY vigil ./vigil
COPY ingest ./ingest
COPY streaming ./streaming
COPY features ./features
COPY models ./models
COPY alerts ./alerts
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ARG VIGIL_UID=10001
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Streaming predictive maintenance: OPC UA/MQTT -> Kafka -> River -> InfluxDB and alerts" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIGIL_CONFIG=/etc/vigil/plant.toml \
    VIGIL_STATE_DIR=/var/lib/vigil \
    VIGIL_METRICS_HOST=0.0.0.0 \
    VIGIL_METRICS_PORT=9464 \
    VIGIL_LOG_JSON=1
RUN groupadd --system --gid "${VIGIL_UID}" vigil \
 && useradd --system --uid "${VIGIL_UID}" --gid vigil --home-dir /var/lib/vigil --create-home \
      --shell /usr/sbin/nologin vigil
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/vigil-*.whl
COPY --chown=root:root config/plant.example.toml /etc/vigil/plant.toml
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd (user `vigil`).
USER ${VIGIL_UID}:${VIGIL_UID}
WORKDIR /var/lib/vigil
# 4840 OPC UA (simulator), 8470 alerts HTTP API, 9464 metrics/health (every service, one per container).
EXPOSE 4840 8470 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD ["python", "-m", "vigil.metrics", "probe", "http://127.0.0.1:9464/readyz"]
ENTRYPOINT ["vigil"]
CMD ["--help"]
