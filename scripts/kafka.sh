#!/usr/bin/env bash
# Start, stop or check a real single-node Apache Kafka broker (KRaft: broker and
# controller in one JVM) on 127.0.0.1, for tests and local development.
#
#   scripts/kafka.sh start    # fetch jars once (Maven), format storage, start, wait until ready
#   scripts/kafka.sh resume   # start again on the data of the last start (no wipe)
#   scripts/kafka.sh stop     # stop the broker this script started
#   scripts/kafka.sh status   # exit 0 when the broker answers
#
# With KAFKA_BOOTSTRAP_SERVERS already set, `start` starts nothing and only checks that
# broker answers. Settings (environment):
#   KAFKA_PORT       client port (default 9092); the controller uses KAFKA_PORT+1
#   KAFKA_STATE_DIR  config, data and log of the broker (default: .kafka in the repo)
#   DRIFTLINE_CACHE  where the jars are cached (default: ~/.cache/driftline)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
port="${KAFKA_PORT:-9092}"
controller_port="$((port + 1))"
state="${KAFKA_STATE_DIR:-$repo/.kafka}"
jars="${DRIFTLINE_CACHE:-$HOME/.cache/driftline}/kafka-$version/jars"
pidfile="$state/broker.pid"
log="$state/server.log"

say() { echo "[kafka.sh] $*" >&2; }

port_open() {  # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && exec 3>&- 3<&-
}

fetch_jars() {
    if [[ -f "$jars/.complete" ]]; then
        return
    fi
    say "fetching Apache Kafka $version jars with Maven (cached in $jars)"
    rm -rf "$jars"
    mkdir -p "$jars"
    mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$jars" >&2
    touch "$jars/.complete"
}

write_config() {
    mkdir -p "$state"
    cat >"$state/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$state/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
message.max.bytes=16777216
EOF
}

java_run() {  # main class and arguments
    java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
        -Dkafka.logs.file="$log" -cp "$jars/*" "$@"
}

start() {
    if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        say "using the existing broker at $KAFKA_BOOTSTRAP_SERVERS; starting nothing"
        local first="${KAFKA_BOOTSTRAP_SERVERS%%,*}"
        port_open "${first%:*}" "${first##*:}" || { say "no broker answers at $first"; exit 1; }
        return
    fi
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        say "broker already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
        return
    fi
    if port_open 127.0.0.1 "$port"; then
        say "port $port is taken by another process; set KAFKA_PORT or KAFKA_BOOTSTRAP_SERVERS"
        exit 1
    fi
    command -v java >/dev/null || { say "java not found: install a JDK (17+)"; exit 1; }
    fetch_jars
    rm -rf "$state"
    write_config
    local cluster_id
    cluster_id="$(java_run kafka.tools.StorageTool random-uuid)"
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$state/server.properties" >/dev/null
    say "starting Apache Kafka $version (KRaft, cluster $cluster_id) on 127.0.0.1:$port"
    launch
}

resume() {
    [[ -f "$state/server.properties" ]] || { say "nothing to resume in $state: use start"; exit 1; }
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        say "broker already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
        return
    fi
    fetch_jars
    : >"$log"
    say "resuming Apache Kafka $version on the data in $state"
    launch
}

launch() {  # run the broker in the background on $state and wait until it serves clients
    nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
        -Dkafka.logs.file="$log" -cp "$jars/*" \
        kafka.Kafka "$state/server.properties" >"$state/stdout.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 240); do
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            say "broker process exited during start-up; last lines of its log:"
            tail -n 40 "$log" "$state/stdout.log" >&2 || true
            exit 1
        fi
        if grep -q "Kafka Server started" "$log" 2>/dev/null && port_open 127.0.0.1 "$port"; then
            say "$(grep -m1 "Kafka Server started" "$log")"
            say "broker ready: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port (pid $(cat "$pidfile"), log $log)"
            return
        fi
        sleep 0.5
    done
    say "broker did not become ready within 120 s; last lines of its log:"
    tail -n 40 "$log" >&2 || true
    stop
    exit 1
}

stop() {
    if [[ ! -f "$pidfile" ]]; then
        say "no broker started by this script"
        return
    fi
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && { say "broker did not stop in 30 s; killing it"; kill -KILL "$pid"; }
        say "broker stopped (pid $pid)"
    fi
    rm -f "$pidfile"
}

status() {
    local target="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$port}"
    target="${target%%,*}"
    if port_open "${target%:*}" "${target##*:}"; then
        say "broker answers at $target"
    else
        say "no broker at $target"
        exit 1
    fi
}

case "${1:-}" in
    start) start ;;
    resume) resume ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|resume|stop|status" >&2; exit 2 ;;
esac
