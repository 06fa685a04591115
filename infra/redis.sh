#!/usr/bin/env bash
# Start/stop/status of a local redis-server on 127.0.0.1:$AIAAS_REDIS_PORT with its own data folder.
# Installs Debian's redis-server when missing. Persistence: AOF, fsynced every second, in
# $AIAAS_STATE_DIR/redis, so API keys, tenants, webhook secrets, queued webhooks and idempotency
# records survive a restart (at most the last second of writes is lost on a crash).
# `start` is idempotent; `stop` stops only our pid.
set -euo pipefail
source "$(dirname "$0")/kafka/env.sh"
ensure_installed() {
  command -v redis-server >/dev/null && return 0
  echo "installing redis-server (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; fi
}
case "${1:-start}" in
  start)
    if pid_alive "$REDIS_PID" && port_open "$AIAAS_REDIS_PORT"; then
      echo "redis already running (pid $(cat "$REDIS_PID"), port $AIAAS_REDIS_PORT)"; exit 0
    fi
    if port_open "$AIAAS_REDIS_PORT"; then
      echo "port $AIAAS_REDIS_PORT is taken by a process not started with state dir $AIAAS_STATE_DIR;" \
        "set AIAAS_EXTERNAL_INFRA=1 to use it as it is, or AIAAS_REDIS_PORT, or AIAAS_STATE_DIR to the state dir of the redis that runs there" >&2; exit 1
    fi
    ensure_installed
    mkdir -p "$REDIS_DATA"
    redis-server --port "$AIAAS_REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DATA" \
      --daemonize yes --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --save "" --appendonly yes --appendfsync everysec \
      --appendfilename appendonly.aof
    for _ in $(seq 100); do
      if redis-cli -p "$AIAAS_REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
        echo "redis up on 127.0.0.1:$AIAAS_REDIS_PORT (pid $(cat "$REDIS_PID"))"; exit 0; fi
      sleep 0.1
    done
    echo "redis did not answer; see $REDIS_LOG" >&2; exit 1 ;;
  stop)
    if pid_alive "$REDIS_PID"; then stop_pid "$REDIS_PID" 10; echo "redis stopped"; else rm -f "$REDIS_PID"; echo "redis not running"; fi ;;
  status)
    if pid_alive "$REDIS_PID"; then echo "redis: running (pid $(cat "$REDIS_PID"), port $AIAAS_REDIS_PORT)"
    elif port_open "$AIAAS_REDIS_PORT"; then echo "redis: port $AIAAS_REDIS_PORT answers, but not a redis started with state dir $AIAAS_STATE_DIR"
    else echo "redis: stopped"; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
