#!/usr/bin/env bash
# Bring up the local infrastructure (Kafka broker + Redis). Idempotent.
# AIAAS_EXTERNAL_INFRA=1: start nothing, use the broker and Redis already answering on
# AIAAS_KAFKA_PORT / AIAAS_REDIS_PORT (e.g. those of another clone on this machine), and fail when
# either does not answer; the tests read the variable the same way (tests/infra.py).
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
if [ "${AIAAS_EXTERNAL_INFRA:-0}" = "1" ]; then
  source "$dir/kafka/env.sh"
  for svc in "kafka $AIAAS_KAFKA_PORT" "redis $AIAAS_REDIS_PORT"; do
    set -- $svc
    if ! port_open "$2"; then
      echo "AIAAS_EXTERNAL_INFRA=1 but nothing answers on 127.0.0.1:$2 ($1); start it, or unset AIAAS_EXTERNAL_INFRA" >&2
      exit 1
    fi
    echo "$1: using the one already running on 127.0.0.1:$2 (AIAAS_EXTERNAL_INFRA=1)"
  done
  exit 0
fi
bash "$dir/kafka/start.sh"
bash "$dir/redis.sh" start
