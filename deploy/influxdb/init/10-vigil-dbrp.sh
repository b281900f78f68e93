#!/bin/sh
# Runs once, right after InfluxDB 2.7's first-start setup (the image's /docker-entrypoint-initdb.d hook).
# Vigil's schema is queried with InfluxQL (its own query commands and the Grafana dashboards), which InfluxDB 2.x
# answers through the v1 compatibility API: map database "$DOCKER_INFLUXDB_INIT_BUCKET" / retention policy
# "autogen" to the bucket explicitly, instead of relying on the implicit (virtual) mapping.
set -eu
bucket_id=$(influx bucket list --name "${DOCKER_INFLUXDB_INIT_BUCKET}" --hide-headers | cut -f1)
influx v1 dbrp create \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --bucket-id "${bucket_id}" \
  --default \
  || echo "vigil: DBRP mapping for ${DOCKER_INFLUXDB_INIT_BUCKET} already exists"
