#!/usr/bin/env bash
# Start/stop/status of a SECOND, SASL-enabled broker beside the shared one (which is left alone):
# own state dir and ports, a SASL_PLAINTEXT/SCRAM-SHA-256 listener with one user.
#   infra/kafka/sasl-broker.sh start|stop|status [--acl]
# Defaults (override from the environment): state dir $AIAAS_STATE_DIR/sasl (the jars are the main
# state dir's, $AIAAS_KAFKA_LIBS), PLAINTEXT 29092, controller 29093,
# SASL 29094, user aiaas / aiaas-secret. Clients then use
#   AIAAS_BOOTSTRAP_SERVERS=127.0.0.1:29094 AIAAS_SECURITY_PROTOCOL=SASL_PLAINTEXT
#   AIAAS_SASL_MECHANISM=SCRAM-SHA-256 AIAAS_SASL_USERNAME=aiaas AIAAS_SASL_PASSWORD=aiaas-secret
#
# --acl (infra/kafka/sasl-broker.sh start --acl): access control on (docs/operations.md, "Access
# control"). KRaft's StandardAuthorizer, allow.everyone.if.no.acl.found=false; every listener needs
# a login: the broker's own listeners (AIAAS_SASL_PLAINTEXT_PORT, controller) take SASL/PLAIN with
# the broker's internal user, whose secret is generated into <state dir>/broker.secret; clients use
# the SCRAM listener. Super users: that internal user and the admin (AIAAS_KAFKA_SASL_USER, default
# admin / admin-secret; what `aiaas acl apply` runs as). Defaults: state dir $AIAAS_STATE_DIR/sasl-acl,
# ports 29192 (internal), 29193 (controller), 29194 (SCRAM).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"  # the main state dir's defaults, kept for the jars
export AIAAS_KAFKA_LIBS="$KAFKA_LIBS"
acl=0
if [ "${2:-}" = "--acl" ] || [ "${1:-}" = "--acl" ]; then acl=1; fi
if [ "$acl" = 1 ]; then
  export AIAAS_STATE_DIR="${AIAAS_SASL_STATE_DIR:-$AIAAS_STATE_DIR/sasl-acl}"
  export AIAAS_KAFKA_PORT="${AIAAS_SASL_PLAINTEXT_PORT:-29192}"
  export AIAAS_KAFKA_CONTROLLER_PORT="${AIAAS_SASL_CONTROLLER_PORT:-29193}"
  export AIAAS_KAFKA_SASL_PORT="${AIAAS_SASL_PORT:-29194}"
  export AIAAS_KAFKA_SASL_USER="${AIAAS_KAFKA_SASL_USER:-admin}"
  export AIAAS_KAFKA_SASL_PASSWORD="${AIAAS_KAFKA_SASL_PASSWORD:-admin-secret}"
else
  export AIAAS_STATE_DIR="${AIAAS_SASL_STATE_DIR:-$AIAAS_STATE_DIR/sasl}"
  export AIAAS_KAFKA_PORT="${AIAAS_SASL_PLAINTEXT_PORT:-29092}"
  export AIAAS_KAFKA_CONTROLLER_PORT="${AIAAS_SASL_CONTROLLER_PORT:-29093}"
  export AIAAS_KAFKA_SASL_PORT="${AIAAS_SASL_PORT:-29094}"
  export AIAAS_KAFKA_SASL_USER="${AIAAS_KAFKA_SASL_USER:-aiaas}"
  export AIAAS_KAFKA_SASL_PASSWORD="${AIAAS_KAFKA_SASL_PASSWORD:-aiaas-secret}"
fi
export AIAAS_KAFKA_HEAP="${AIAAS_SASL_HEAP:--Xms128m -Xmx384m}"
export AIAAS_KAFKA_SASL=1

# The authorizer and the PLAIN login of the broker's own listeners (appended by start.sh).
acl_config() {
  local secret_file="$AIAAS_STATE_DIR/broker.secret" secret jaas
  mkdir -p "$AIAAS_STATE_DIR"
  if [ ! -s "$secret_file" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$secret_file")
  fi
  secret=$(cat "$secret_file")
  jaas="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"broker\" password=\"$secret\" user_broker=\"$secret\";"
  cat <<PROPS
listener.security.protocol.map=PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.plaintext.plain.sasl.jaas.config=$jaas
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=$jaas
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:broker;User:$AIAAS_KAFKA_SASL_USER
allow.everyone.if.no.acl.found=false
PROPS
}
if [ "$acl" = 1 ]; then AIAAS_KAFKA_EXTRA_CONFIG="$(acl_config)"; export AIAAS_KAFKA_EXTRA_CONFIG; fi
case "${1:-start}" in
  start) bash "$here/start.sh" ;;
  stop) bash "$here/stop.sh" ;;
  status)
    source "$here/env.sh"
    if pid_alive "$KAFKA_PID"; then echo "sasl kafka: running (pid $(cat "$KAFKA_PID"), SASL port $AIAAS_KAFKA_SASL_PORT)"
    else echo "sasl kafka: stopped"; fi ;;
  *) echo "usage: $0 start|stop|status [--acl]" >&2; exit 2 ;;
esac
