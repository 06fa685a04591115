#!/usr/bin/env bash
# Stop what up.sh started, and nothing else.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
bash "$dir/redis.sh" stop
bash "$dir/kafka/stop.sh"
