#!/usr/bin/env bash
# Print whether our Kafka broker and Redis are running.
set -uo pipefail
source "$(dirname "$0")/kafka/env.sh"
if pid_alive "$KAFKA_PID" && port_open "$AIAAS_KAFKA_PORT"; then
  echo "kafka: running (pid $(cat "$KAFKA_PID"), $AIAAS_KAFKA_HOST:$AIAAS_KAFKA_PORT, state $AIAAS_STATE_DIR)"
elif port_open "$AIAAS_KAFKA_PORT"; then
  echo "kafka: port $AIAAS_KAFKA_PORT answers, but not a broker started with state dir $AIAAS_STATE_DIR (AIAAS_STATE_DIR)"
else echo "kafka: stopped"; fi
bash "$(dirname "$0")/redis.sh" status
