#!/usr/bin/env bash
# A local schema registry for Confluent-framed Avro: Apicurio Registry 3.x from Maven Central (the
# Quarkus uber-jar of io.apicurio:apicurio-registry-app), no Docker. It serves the Confluent API
# under /apis/ccompat/v7 (POST /subjects/S/versions, GET /schemas/ids/ID), which is what a Source's
# `avro: {registry_url: ...}` reads (docs/sources.md).
#
#   infra/schema-registry.sh start|stop|status|url|fetch
#
# `start` is idempotent (fetches the app once, then waits until the API answers); `stop` stops only
# the pid this script started; `url` prints the Confluent-compatible base URL. Exit status 3: the
# registry cannot be installed here (no java, Maven Central unreachable); tests skip on it alone.
# Schemas are kept in an H2 file database under the state dir, so ids survive a restart.
# Settings: AIAAS_SCHEMA_REGISTRY_PORT (18081), AIAAS_SCHEMA_REGISTRY_VERSION (3.0.9: the last 3.x
# line built for Java 17; 3.1+ need Java 21), AIAAS_SCHEMA_REGISTRY_HEAP (-Xms64m -Xmx384m),
# AIAAS_SCHEMA_REGISTRY_READY_S (180), AIAAS_STATE_DIR (${XDG_CACHE_HOME:-~/.cache}/aiaas/state),
# AIAAS_MAVEN_URL (https://repo1.maven.org/maven2).
set -euo pipefail
: "${AIAAS_STATE_DIR:=${XDG_CACHE_HOME:-$HOME/.cache}/aiaas/state}"
: "${AIAAS_SCHEMA_REGISTRY_PORT:=18081}"
: "${AIAAS_SCHEMA_REGISTRY_VERSION:=3.0.9}"
: "${AIAAS_SCHEMA_REGISTRY_HEAP:=-Xms64m -Xmx384m}"
: "${AIAAS_SCHEMA_REGISTRY_READY_S:=180}"
: "${AIAAS_MAVEN_URL:=https://repo1.maven.org/maven2}"
V="$AIAAS_SCHEMA_REGISTRY_VERSION"
PORT="$AIAAS_SCHEMA_REGISTRY_PORT"
DIR="$AIAAS_STATE_DIR/schema-registry"
APP="$DIR/apicurio-$V"
PID="$DIR/registry-$PORT.pid"
LOG="$DIR/registry-$PORT.log"
URL="http://127.0.0.1:$PORT/apis/ccompat/v7"
mkdir -p "$DIR"

alive() { [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; }
answers() { curl -fsS -m 3 -o /dev/null "$URL/subjects" 2>/dev/null; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
runner() { find "$APP" -maxdepth 1 \( -name 'quarkus-run.jar' -o -name '*-runner.jar' \) | head -1; }

fetch() {
  [ -n "$(runner 2>/dev/null)" ] && return 0
  command -v java >/dev/null || { echo "schema-registry: java is not installed" >&2; exit 3; }
  local name="apicurio-registry-app-$V-all.tar.gz"
  local src="$AIAAS_MAVEN_URL/io/apicurio/apicurio-registry-app/$V/$name"
  echo "schema-registry: fetching $src" >&2
  curl -fsS -m 900 -o "$DIR/$name.part" "$src" || { echo "schema-registry: cannot fetch $src" >&2; exit 3; }
  local want; want=$(curl -fsS -m 60 "$src.sha1" | cut -c1-40) || { echo "schema-registry: cannot fetch $src.sha1" >&2; exit 3; }
  [ "$(sha1sum "$DIR/$name.part" | cut -c1-40)" = "$want" ] || { echo "schema-registry: sha1 mismatch for $name" >&2; exit 3; }
  mkdir -p "$APP.part" && tar xzf "$DIR/$name.part" -C "$APP.part" && mv "$APP.part" "$APP" && rm -f "$DIR/$name.part"
}

start() {
  if alive && answers; then echo "schema-registry: running at $URL"; return 0; fi
  if ! alive && port_taken; then
    echo "schema-registry: port $PORT answers but is not ours (set AIAAS_SCHEMA_REGISTRY_PORT)" >&2; exit 1
  fi
  fetch
  if ! alive; then
    # shellcheck disable=SC2086 # the heap setting is several flags
    nohup java $AIAAS_SCHEMA_REGISTRY_HEAP -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$PORT" \
      -Dapicurio.storage.sql.kind=h2 \
      -Dapicurio.datasource.url="jdbc:h2:file:$DIR/data-$PORT/registry;DB_CLOSE_ON_EXIT=FALSE" \
      -Dquarkus.log.level=WARN -jar "$(runner)" >"$LOG" 2>&1 </dev/null 9>&- &  # 9: our lock, not its
    echo $! >"$PID"
  fi
  local deadline=$((SECONDS + AIAAS_SCHEMA_REGISTRY_READY_S))
  until answers; do
    if ! alive; then echo "schema-registry: exited while starting; see $LOG" >&2; tail -5 "$LOG" >&2; exit 1; fi
    if [ "$SECONDS" -ge "$deadline" ]; then echo "schema-registry: not ready in ${AIAAS_SCHEMA_REGISTRY_READY_S}s; see $LOG" >&2; exit 1; fi
    sleep 1
  done
  echo "schema-registry: running at $URL"
}

stop() {
  alive || { rm -f "$PID"; echo "schema-registry: not running"; return 0; }
  local pid; pid=$(cat "$PID")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PID"
  echo "schema-registry: stopped"
}

case "${1:-}" in
  start|stop|fetch)
    exec 9>"$DIR/registry-$PORT.lock"
    flock -w 600 9
    "$1" ;;
  status) if alive && answers; then echo "schema-registry: running at $URL"; else echo "schema-registry: not running"; exit 1; fi ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|status|url|fetch" >&2; exit 2 ;;
esac
