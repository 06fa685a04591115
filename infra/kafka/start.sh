#!/usr/bin/env bash
# Start a single-node KRaft Kafka broker on 127.0.0.1 if it is not already running.
# Idempotent: a second call with the broker up does nothing. AIAAS_KAFKA_SASL=1 adds a
# SASL_PLAINTEXT/SCRAM-SHA-256 listener on AIAAS_KAFKA_SASL_PORT; its user (AIAAS_KAFKA_SASL_USER /
# AIAAS_KAFKA_SASL_PASSWORD) is written into the metadata log when the storage is formatted, so it
# must be set on the first start of a state dir. infra/kafka/sasl-broker.sh runs such a broker
# beside the shared one (own ports and state dir).
set -euo pipefail
source "$(dirname "$0")/env.sh"
if pid_alive "$KAFKA_PID" && port_open "$AIAAS_KAFKA_PORT"; then
  echo "kafka already running (pid $(cat "$KAFKA_PID"), port $AIAAS_KAFKA_PORT)"; exit 0
fi
if port_open "$AIAAS_KAFKA_PORT"; then
  echo "port $AIAAS_KAFKA_PORT is taken by a process not started with state dir $AIAAS_STATE_DIR;" \
    "set AIAAS_EXTERNAL_INFRA=1 to use it as it is, or AIAAS_KAFKA_PORT, or AIAAS_STATE_DIR to the state dir of the broker that runs there" >&2; exit 1
fi
bash "$INFRA_DIR/kafka/fetch.sh"
CONFIG="$AIAAS_STATE_DIR/server.properties"
sasl_listener="" sasl_adv="" sasl_cfg=""
if [ "${AIAAS_KAFKA_SASL:-0}" = "1" ]; then
  sasl_listener=",SASL_PLAINTEXT://127.0.0.1:$AIAAS_KAFKA_SASL_PORT"
  sasl_adv="$sasl_listener"
  sasl_cfg="sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
fi
sed -e "s|@HOST@|$AIAAS_KAFKA_HOST|g" -e "s|@PORT@|$AIAAS_KAFKA_PORT|g" \
    -e "s|@CONTROLLER_PORT@|$AIAAS_KAFKA_CONTROLLER_PORT|g" -e "s|@DATA@|$KAFKA_DATA|g" \
    -e "s|@SASL_LISTENER@|$sasl_listener|g" -e "s|@SASL_ADVERTISED@|$sasl_adv|g" \
    -e "/@SASL_CONFIG@/d" "$INFRA_DIR/kafka/server.properties.in" > "$CONFIG"
if [ -n "$sasl_cfg" ]; then printf '%s\n' "$sasl_cfg" >> "$CONFIG"; fi
# extra broker properties appended last (later keys win): sasl-broker.sh --acl's authorizer
if [ -n "${AIAAS_KAFKA_EXTRA_CONFIG:-}" ]; then printf '%s\n' "$AIAAS_KAFKA_EXTRA_CONFIG" >> "$CONFIG"; fi
CP="$KAFKA_LIBS/*"
LOG4J="${AIAAS_KAFKA_LOG4J:-$INFRA_DIR/kafka/log4j.properties}"  # a test may log more (the authorizer)
if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
  mkdir -p "$KAFKA_DATA"
  scram=()
  if [ "${AIAAS_KAFKA_SASL:-0}" = "1" ]; then
    scram=(--add-scram "SCRAM-SHA-256=[name=${AIAAS_KAFKA_SASL_USER:-aiaas},password=${AIAAS_KAFKA_SASL_PASSWORD:-aiaas-secret}]")
  fi
  cluster_id=${AIAAS_KAFKA_CLUSTER_ID:-$(java -cp "$CP" kafka.tools.StorageTool random-uuid)}
  # --cluster-id=ID in one word: an id may start with '-' (base64url), which "-t ID" reads as an option
  java -Dlog4j.configuration="file:$LOG4J" -cp "$CP" kafka.tools.StorageTool format \
    --cluster-id="$cluster_id" -c "$CONFIG" "${scram[@]}" >/dev/null
fi
# shellcheck disable=SC2086
nohup java $AIAAS_KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j.configuration="file:$LOG4J" -Dkafka.logs.dir="$AIAAS_STATE_DIR" \
  -cp "$CP" kafka.Kafka "$CONFIG" >"$KAFKA_LOG" 2>&1 &
echo $! > "$KAFKA_PID"
for _ in $(seq 600); do
  if grep -q "Kafka Server started" "$KAFKA_LOG" 2>/dev/null && port_open "$AIAAS_KAFKA_PORT" &&
     { [ "${AIAAS_KAFKA_SASL:-0}" != "1" ] || port_open "$AIAAS_KAFKA_SASL_PORT"; }; then
    echo "kafka up on $AIAAS_KAFKA_HOST:$AIAAS_KAFKA_PORT (pid $(cat "$KAFKA_PID"))"; exit 0
  fi
  if ! pid_alive "$KAFKA_PID"; then echo "kafka exited; see $KAFKA_LOG" >&2; tail -20 "$KAFKA_LOG" >&2; exit 1; fi
  sleep 0.1
done
echo "kafka did not become ready in 60 s; see $KAFKA_LOG" >&2; exit 1
