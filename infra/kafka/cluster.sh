#!/usr/bin/env bash
# A local 3-node KRaft cluster from the same jars as the single broker ($AIAAS_KAFKA_LIBS), no Docker.
#
#   infra/kafka/cluster.sh start|stop|status|bootstrap|kill N|restart N|pid N
#
# Each node is broker + controller (a 3-voter quorum), with its own state dir
# $AIAAS_STATE_DIR/cluster/node-N and its own ports: node N listens on
# AIAAS_CLUSTER_PORT + 2(N-1) (20092, 20094, 20096) and its controller on the next port up
# (20093, 20095, 20097). Every topic is replicated 3 times (default.replication.factor, the offsets
# and transaction state topics) and min.insync.replicas is 2, so acks=all writes survive the loss of
# any one node (cluster.properties.in). Point aiaas at it with
#   AIAAS_BOOTSTRAP_SERVERS=$(infra/kafka/cluster.sh bootstrap) AIAAS_REPLICATION_FACTOR=3
# `start` and `restart N` are idempotent and wait until the node(s) serve; `kill N` is kill -9 (the
# fault tier's crash); `stop` stops only the pids this script started.
# Fixed ports stay below Linux's ephemeral range (32768-60999): at 49092 a client connection's own
# port once held one when the tier started (CI: "failed to bind").
# Settings: AIAAS_CLUSTER_PORT (20092), AIAAS_CLUSTER_HEAP (-Xms128m -Xmx384m),
# AIAAS_CLUSTER_STATE_DIR ($AIAAS_STATE_DIR/cluster), AIAAS_CLUSTER_READY_S (180).
set -euo pipefail
source "$(dirname "$0")/env.sh"
: "${AIAAS_CLUSTER_PORT:=20092}"
: "${AIAAS_CLUSTER_HEAP:=-Xms128m -Xmx384m}"
: "${AIAAS_CLUSTER_STATE_DIR:=$AIAAS_STATE_DIR/cluster}"
: "${AIAAS_CLUSTER_READY_S:=180}"
NODES=(1 2 3)
CDIR="$AIAAS_CLUSTER_STATE_DIR"
CP="$KAFKA_LIBS/*"
LOG4J="$INFRA_DIR/kafka/log4j.properties"
mkdir -p "$CDIR"

port_of() { echo $((AIAAS_CLUSTER_PORT + 2 * ($1 - 1))); }
controller_of() { echo $((AIAAS_CLUSTER_PORT + 2 * ($1 - 1) + 1)); }
node_dir() { echo "$CDIR/node-$1"; }
pid_file() { echo "$(node_dir "$1")/kafka.pid"; }
log_file() { echo "$(node_dir "$1")/kafka.log"; }
bootstrap() { local n out=""; for n in "${NODES[@]}"; do out+="${out:+,}$AIAAS_KAFKA_HOST:$(port_of "$n")"; done; echo "$out"; }
running() { pid_alive "$(pid_file "$1")"; }
ready() { running "$1" && port_open "$(port_of "$1")" && grep -q "Kafka Server started" "$(log_file "$1")" 2>/dev/null; }

check_node() {
  case "${1:-}" in 1|2|3) ;; *) echo "node must be 1, 2 or 3 (got '${1:-}')" >&2; exit 2 ;; esac
}

# Write node N's server.properties and format its storage once (the cluster id is shared).
configure() {
  local n=$1 dir voters="" v; dir=$(node_dir "$n")
  for v in "${NODES[@]}"; do voters+="${voters:+,}$v@127.0.0.1:$(controller_of "$v")"; done
  mkdir -p "$dir/data"
  sed -e "s|@NODE@|$n|g" -e "s|@VOTERS@|$voters|g" -e "s|@HOST@|$AIAAS_KAFKA_HOST|g" \
      -e "s|@PORT@|$(port_of "$n")|g" -e "s|@CONTROLLER_PORT@|$(controller_of "$n")|g" \
      -e "s|@DATA@|$dir/data|g" "$INFRA_DIR/kafka/cluster.properties.in" > "$dir/server.properties"
  if [ ! -f "$CDIR/cluster.id" ]; then
    java -Dlog4j.configuration="file:$LOG4J" -cp "$CP" kafka.tools.StorageTool random-uuid > "$CDIR/cluster.id"
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    java -Dlog4j.configuration="file:$LOG4J" -cp "$CP" kafka.tools.StorageTool format \
      -t "$(cat "$CDIR/cluster.id")" -c "$dir/server.properties" >/dev/null
  fi
}

# Launch node N in the background (no wait); a node already running is left alone.
launch() {
  local n=$1 dir; dir=$(node_dir "$n")
  if running "$n"; then return 0; fi
  if port_open "$(port_of "$n")" || port_open "$(controller_of "$n")"; then
    echo "port $(port_of "$n") or $(controller_of "$n") is taken by another process; set AIAAS_CLUSTER_PORT" >&2
    exit 1
  fi
  configure "$n"
  # The node must not hold any descriptor it inherited (our lock, a caller's pipe, which would keep
  # the caller waiting for an end of output that never comes): close all but 0-2, then exec.
  (
    for fd in $(ls "/proc/$BASHPID/fd"); do if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi; done 2>/dev/null
    # shellcheck disable=SC2086
    exec nohup java $AIAAS_CLUSTER_HEAP -XX:+UseG1GC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$LOG4J" -Dkafka.logs.dir="$dir" \
      -cp "$CP" kafka.Kafka "$dir/server.properties" >"$(log_file "$n")" 2>&1 </dev/null
  ) &
  echo $! > "$(pid_file "$n")"
}

# Wait until every node named serves (a node only finishes starting once the quorum has a leader).
wait_ready() {
  local n pending
  for _ in $(seq $((AIAAS_CLUSTER_READY_S * 10))); do
    pending=0
    for n in "$@"; do
      if ! running "$n"; then echo "node $n exited; see $(log_file "$n")" >&2; tail -20 "$(log_file "$n")" >&2; exit 1; fi
      ready "$n" || pending=1
    done
    if [ $pending = 0 ]; then return 0; fi
    sleep 0.1
  done
  echo "cluster nodes $* not ready in ${AIAAS_CLUSTER_READY_S} s; see $CDIR/node-*/kafka.log" >&2; exit 1
}

# Serialise start/stop/kill/restart of one state dir (a test tier and a benchmark may both call start).
lock() { exec 9>"$CDIR/.lock"; flock 9; }

case "${1:-status}" in
  start)
    lock
    bash "$INFRA_DIR/kafka/fetch.sh"
    for n in "${NODES[@]}"; do launch "$n"; done
    wait_ready "${NODES[@]}"
    echo "kafka cluster up: $(bootstrap)" ;;
  stop)
    lock
    # all at once: stopped one by one, the last nodes would wait for a quorum that is gone
    for n in "${NODES[@]}"; do if running "$n"; then kill -TERM "$(cat "$(pid_file "$n")")"; fi; done
    for n in "${NODES[@]}"; do stop_pid "$(pid_file "$n")" 30; done
    echo "kafka cluster stopped" ;;
  status)
    for n in "${NODES[@]}"; do
      if ready "$n"; then echo "node $n: running (pid $(cat "$(pid_file "$n")"), $AIAAS_KAFKA_HOST:$(port_of "$n"))"
      elif running "$n"; then echo "node $n: starting (pid $(cat "$(pid_file "$n")"))"
      else echo "node $n: stopped"; fi
    done ;;
  bootstrap) bootstrap ;;
  pid) check_node "${2:-}"; running "$2" && cat "$(pid_file "$2")" ;;
  kill)
    check_node "${2:-}"; lock
    if running "$2"; then pid=$(cat "$(pid_file "$2")"); kill -KILL "$pid"
      for _ in $(seq 100); do pid_running "$pid" || break; sleep 0.05; done
      rm -f "$(pid_file "$2")"; echo "node $2 killed (pid $pid)"
    else echo "node $2 not running"; fi ;;
  restart)
    check_node "${2:-}"; lock
    launch "$2"; wait_ready "$2"
    echo "node $2 up on $AIAAS_KAFKA_HOST:$(port_of "$2")" ;;
  *) echo "usage: $0 start|stop|status|bootstrap|kill N|restart N|pid N" >&2; exit 2 ;;
esac
