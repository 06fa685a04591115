#!/usr/bin/env bash
# Stop the broker that start.sh started (by its pid file); other processes are left alone.
set -euo pipefail
source "$(dirname "$0")/env.sh"
if pid_alive "$KAFKA_PID"; then stop_pid "$KAFKA_PID" 60; echo "kafka stopped"; else rm -f "$KAFKA_PID"; echo "kafka not running"; fi
