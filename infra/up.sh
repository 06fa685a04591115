#!/usr/bin/env bash
# Bring up the local infrastructure (Kafka broker + Redis). Idempotent.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
"$dir/kafka/start.sh"
"$dir/redis.sh" start
