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
# broker answers. `start` prints the export lines of its broker on stdout (progress goes to
# stderr), so `eval "$(bash scripts/kafka.sh start)"` points the shell at it.
# Settings (environment):
#   KAFKA_PORT       client port (default 9092); the controller uses KAFKA_PORT+1, a secure
#                    broker also KAFKA_PORT+2 and +3. 0 picks free ports, so a test can start
#                    an extra broker beside a running one (give it its own KAFKA_STATE_DIR).
#                    stop/status/resume use the port the broker in KAFKA_STATE_DIR was given.
#   KAFKA_STATE_DIR  config, data and log of the broker (default: .kafka in the repo)
#   KAFKA_SECURITY   "secure": a broker that only speaks TLS and SASL, with certificates made
#                    by openssl in $KAFKA_STATE_DIR/tls and fresh random passwords:
#                      KAFKA_PORT    SASL_SSL        (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
#                      KAFKA_PORT+2  SSL with a required client certificate (mutual TLS)
#                      KAFKA_PORT+3  SASL_PLAINTEXT  (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
#                    User `driftline` exists for every mechanism. `start` prints the
#                    DRIFTLINE_KAFKA_SECURITY__* exports for SASL_SSL with SCRAM-SHA-512;
#                    $KAFKA_STATE_DIR/client.env lists every port, file and password.
#   DRIFTLINE_CACHE  where the jars are cached (default: ~/.cache/driftline)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
state="${KAFKA_STATE_DIR:-$repo/.kafka}"
security="${KAFKA_SECURITY:-plaintext}"
jars="${DRIFTLINE_CACHE:-$HOME/.cache/driftline}/kafka-$version/jars"
pidfile="$state/broker.pid"
log="$state/server.log"
tls="$state/tls"
scram_users=()

say() { echo "[kafka.sh] $*" >&2; }

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

free_ports() {  # the first of 4 consecutive ports nothing listens on
    local p i
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        for i in 0 1 2 3; do port_open 127.0.0.1 $((p + i)) && continue 2; done
        echo "$p"
        return
    done
    say "found no 4 free consecutive ports"
    exit 1
}

choose_port() {  # start: KAFKA_PORT (0: free ports); else the port of the broker in $state
    if [[ "${1:-}" != start && -f "$state/port" ]]; then
        port="$(cat "$state/port")"
    elif [[ "${KAFKA_PORT:-9092}" == 0 ]]; then
        port="$(free_ports)"
    else
        port="${KAFKA_PORT:-9092}"
    fi
    controller_port="$((port + 1))"
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
    echo "$port" >"$state/port"
    if [[ "$security" == secure ]]; then
        secure_listeners
    else
        cat >"$state/server.properties" <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOF
    fi
    cat >>"$state/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
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

password() { openssl rand -hex 16; }

make_certs() {  # a CA, a broker certificate for 127.0.0.1/localhost, a client certificate
    mkdir -p "$tls"
    (
        cd "$tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=driftline test CA" \
            -keyout ca.key -out ca.pem 2>/dev/null
        for who in broker client; do
            openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" \
                -keyout "$who.key" -out "$who.csr" 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$who.ext"
            openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
                -days 2 -extfile "$who.ext" -out "$who.pem" 2>/dev/null
        done
        openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem \
            -name broker -passout "pass:$keystore_password" -out broker.p12
        # The client key also encrypted, as a managed cluster usually hands it out.
        openssl pkcs8 -topk8 -in client.key -passout "pass:$client_key_password" \
            -out client-encrypted.key
    )
}

secure_listeners() {  # certificates, users and listeners of a broker speaking only TLS + SASL
    local admin_password user_password
    admin_password="$(password)" user_password="$(password)"
    keystore_password="$(password)" client_key_password="$(password)"
    make_certs
    local scram="org.apache.kafka.common.security.scram.ScramLoginModule required"
    local plain="org.apache.kafka.common.security.plain.PlainLoginModule required"
    local plain_users="username=\"admin\" password=\"$admin_password\" user_admin=\"$admin_password\" user_driftline=\"$user_password\";"
    cat >"$state/server.properties" <<EOF
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,SSL://127.0.0.1:$((port + 2)),SASL_PLAINTEXT://127.0.0.1:$((port + 3))
advertised.listeners=SASL_SSL://127.0.0.1:$port,SSL://127.0.0.1:$((port + 2)),SASL_PLAINTEXT://127.0.0.1:$((port + 3))
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram username="admin" password="$admin_password";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$scram;
listener.name.sasl_ssl.plain.sasl.jaas.config=$plain $plain_users
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$scram;
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$scram;
listener.name.sasl_plaintext.plain.sasl.jaas.config=$plain $plain_users
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$keystore_password
ssl.key.password=$keystore_password
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
listener.name.ssl.ssl.client.auth=required
EOF
    scram_users=(
        --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_password]"
        --add-scram "SCRAM-SHA-512=[name=driftline,password=$user_password]"
        --add-scram "SCRAM-SHA-256=[name=driftline,password=$user_password]"
    )
    cat >"$state/client.env" <<EOF
KAFKA_SASL_SSL=127.0.0.1:$port
KAFKA_SSL=127.0.0.1:$((port + 2))
KAFKA_SASL_PLAINTEXT=127.0.0.1:$((port + 3))
KAFKA_USER=driftline
KAFKA_PASSWORD=$user_password
KAFKA_CA=$tls/ca.pem
KAFKA_CLIENT_CERT=$tls/client.pem
KAFKA_CLIENT_KEY=$tls/client.key
KAFKA_CLIENT_KEY_ENCRYPTED=$tls/client-encrypted.key
KAFKA_CLIENT_KEY_PASSWORD=$client_key_password
EOF
    chmod 600 "$state/client.env"
}

exports() {  # the environment of a client of this broker, on stdout
    echo "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port"
    [[ -f "$state/client.env" ]] || return 0
    # shellcheck disable=SC1091
    source "$state/client.env"
    echo "export DRIFTLINE_KAFKA_SECURITY__PROTOCOL=SASL_SSL"
    echo "export DRIFTLINE_KAFKA_SECURITY__SASL_MECHANISM=SCRAM-SHA-512"
    echo "export DRIFTLINE_KAFKA_SECURITY__SASL_USERNAME=$KAFKA_USER"
    echo "export DRIFTLINE_KAFKA_SECURITY__SASL_PASSWORD=$KAFKA_PASSWORD"
    echo "export DRIFTLINE_KAFKA_SECURITY__SSL_CA_LOCATION=$KAFKA_CA"
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
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$state/server.properties" \
        "${scram_users[@]}" >/dev/null
    say "starting Apache Kafka $version (KRaft, cluster $cluster_id, $security) on 127.0.0.1:$port"
    launch
    exports
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

stop() { stop_pidfile broker "$pidfile" 30; }

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

choose_port "${1:-}"
case "${1:-}" in
    start) start ;;
    resume) resume ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|resume|stop|status" >&2; exit 2 ;;
esac
