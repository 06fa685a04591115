#!/usr/bin/env bash
# Bring up the local infrastructure (Kafka broker + Redis). Idempotent.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
bash "$dir/kafka/start.sh"
bash "$dir/redis.sh" start
