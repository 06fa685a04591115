#!/usr/bin/env bash
# Print whether our Kafka broker and Redis are running.
set -uo pipefail
source "$(dirname "$0")/kafka/env.sh"
if pid_alive "$KAFKA_PID" && port_open "$AIAAS_KAFKA_PORT"; then
  echo "kafka: running (pid $(cat "$KAFKA_PID"), $AIAAS_KAFKA_HOST:$AIAAS_KAFKA_PORT)"
else echo "kafka: stopped"; fi
"$(dirname "$0")/redis.sh" status
