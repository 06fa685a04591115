#!/usr/bin/env bash
# Start/stop/status of a SECOND, SASL-enabled broker beside the shared one (which is left alone):
# own state dir and ports, a SASL_PLAINTEXT/SCRAM-SHA-256 listener with one user.
#   infra/kafka/sasl-broker.sh start|stop|status
# Defaults (override from the environment): state dir $AIAAS_STATE_DIR/sasl (the jars are the main
# state dir's, $AIAAS_KAFKA_LIBS), PLAINTEXT 29092, controller 29093,
# SASL 29094, user aiaas / aiaas-secret. Clients then use
#   AIAAS_BOOTSTRAP_SERVERS=127.0.0.1:29094 AIAAS_SECURITY_PROTOCOL=SASL_PLAINTEXT
#   AIAAS_SASL_MECHANISM=SCRAM-SHA-256 AIAAS_SASL_USERNAME=aiaas AIAAS_SASL_PASSWORD=aiaas-secret
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"  # the main state dir's defaults, kept for the jars
export AIAAS_KAFKA_LIBS="$KAFKA_LIBS"
export AIAAS_STATE_DIR="${AIAAS_SASL_STATE_DIR:-$AIAAS_STATE_DIR/sasl}"
export AIAAS_KAFKA_PORT="${AIAAS_SASL_PLAINTEXT_PORT:-29092}"
export AIAAS_KAFKA_CONTROLLER_PORT="${AIAAS_SASL_CONTROLLER_PORT:-29093}"
export AIAAS_KAFKA_SASL_PORT="${AIAAS_SASL_PORT:-29094}"
export AIAAS_KAFKA_HEAP="${AIAAS_SASL_HEAP:--Xms128m -Xmx384m}"
export AIAAS_KAFKA_SASL=1
export AIAAS_KAFKA_SASL_USER="${AIAAS_KAFKA_SASL_USER:-aiaas}"
export AIAAS_KAFKA_SASL_PASSWORD="${AIAAS_KAFKA_SASL_PASSWORD:-aiaas-secret}"
case "${1:-start}" in
  start) bash "$here/start.sh" ;;
  stop) bash "$here/stop.sh" ;;
  status)
    source "$here/env.sh"
    if pid_alive "$KAFKA_PID"; then echo "sasl kafka: running (pid $(cat "$KAFKA_PID"), SASL port $AIAAS_KAFKA_SASL_PORT)"
    else echo "sasl kafka: stopped"; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
