#!/usr/bin/env bash
# Stop what up.sh started, and nothing else.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
"$dir/redis.sh" stop
"$dir/kafka/stop.sh"
