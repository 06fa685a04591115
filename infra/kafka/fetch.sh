#!/usr/bin/env bash
# Fetch the Kafka broker jars named in pom.xml into $AIAAS_KAFKA_LIBS (default
# $AIAAS_STATE_DIR/kafka-libs). Maven's local repository (~/.m2) is the cache, so a second fetch
# downloads nothing. pom.xml stays where it ships and is only read (a pom-packaging project has no
# target/ folder: Maven writes nothing beside it).
set -euo pipefail
source "$(dirname "$0")/env.sh"
if [ -f "$KAFKA_LIBS/.complete" ] && [ "$KAFKA_LIBS/.complete" -nt "$INFRA_DIR/kafka/pom.xml" ]; then
  exit 0
fi
rm -rf "$KAFKA_LIBS"
mvn -q -B -f "$INFRA_DIR/kafka/pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime
touch "$KAFKA_LIBS/.complete"
echo "kafka jars ready in $KAFKA_LIBS"
