#!/usr/bin/env bash
# Fetch the Kafka broker jars named in pom.xml into infra/kafka/libs (git-ignored).
# Maven's local repository (~/.m2) is the cache, so a second fetch downloads nothing.
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
