#!/usr/bin/env bash
# Stop what up.sh started, and the schema registry (infra/schema-registry.sh) when one of this
# state dir runs (the Avro tests start it); nothing else.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
bash "$dir/redis.sh" stop
bash "$dir/kafka/stop.sh"
bash "$dir/schema-registry.sh" stop
