# Shared settings for the local infrastructure scripts (sourced, not run).
# Every value can be overridden from the environment. The scripts ship inside the installed package
# (aiaas/infra), which may be read-only: everything they write (broker data, logs, pid files, the
# fetched jars) goes under AIAAS_STATE_DIR, by default the user's cache dir, the same default as
# aiaas' Settings.state_dir (docs/operations.md). A clone's Makefile passes its own .run/.
INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${AIAAS_STATE_DIR:=${XDG_CACHE_HOME:-$HOME/.cache}/aiaas/state}"
: "${AIAAS_KAFKA_HOST:=127.0.0.1}"
: "${AIAAS_KAFKA_PORT:=19092}"
: "${AIAAS_KAFKA_CONTROLLER_PORT:=19093}"
: "${AIAAS_KAFKA_SASL_PORT:=19094}"
: "${AIAAS_KAFKA_HEAP:=-Xms256m -Xmx1g}"
: "${AIAAS_REDIS_PORT:=16379}"
# the broker's jars (fetch.sh); several state dirs may share one copy
KAFKA_LIBS="${AIAAS_KAFKA_LIBS:-$AIAAS_STATE_DIR/kafka-libs}"
KAFKA_DATA="$AIAAS_STATE_DIR/kafka"
KAFKA_PID="$AIAAS_STATE_DIR/kafka.pid"
KAFKA_LOG="$AIAAS_STATE_DIR/kafka.log"
REDIS_DATA="$AIAAS_STATE_DIR/redis"
REDIS_PID="$AIAAS_STATE_DIR/redis.pid"
REDIS_LOG="$AIAAS_STATE_DIR/redis.log"
mkdir -p "$AIAAS_STATE_DIR"

# True when pid $1 runs (a zombie, an unreaped child of a shell that exited long ago, does not),
# and when the process in pid file $1 does.
pid_running() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
pid_alive() { [ -f "$1" ] && pid_running "$(cat "$1")"; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Stop the process recorded in pid file $1 (and only that one), waiting up to $2 seconds.
stop_pid() {
  local file=$1 wait_s=${2:-30}
  if ! pid_alive "$file"; then rm -f "$file"; return 0; fi
  local pid; pid=$(cat "$file")
  kill -TERM "$pid"
  for _ in $(seq $((wait_s * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$file"
}
