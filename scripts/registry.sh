#!/usr/bin/env bash
# Start, stop or check a real Apicurio Registry (in-memory storage) on 127.0.0.1, for the
# Schema Registry tests and local development. Clients speak its Confluent-compatible API:
# http://127.0.0.1:<port>/apis/ccompat/v7.
#
#   scripts/registry.sh start    # build once (Maven, cached), start, wait until it serves
#   scripts/registry.sh stop     # stop the registry this script started
#   scripts/registry.sh url      # print the export line of the running registry
#   scripts/registry.sh status   # exit 0 when the registry answers
#
# `start` prints `export DRIFTLINE_TEST_SCHEMA_REGISTRY_URL=...` on stdout (progress goes to
# stderr), so `eval "$(bash scripts/registry.sh start)"` points the shell at it. With
# DRIFTLINE_TEST_SCHEMA_REGISTRY_URL already set, `start` starts nothing and checks it answers.
# Maven Central has no runnable Apicurio distribution: the first start builds one from the
# registry's jar with the Quarkus Maven plugin (scripts/registry/pom.xml says how; 26 s with an
# empty Maven repository, 60 s measured on a busy machine);
# later starts take 6-20 s (JVM + Quarkus start-up; 6 s on an idle machine).
# Settings (environment):
#   REGISTRY_PORT       HTTP port (default: a free one)
#   REGISTRY_STATE_DIR  pid, port and log of the registry (default: .registry in the repo)
#   DRIFTLINE_CACHE     where the built registry is cached (default: ~/.cache/driftline)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
version="$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$here/registry/pom.xml")"
state="${REGISTRY_STATE_DIR:-$repo/.registry}"
build="${DRIFTLINE_CACHE:-$HOME/.cache/driftline}/apicurio-registry-$version"
pidfile="$state/registry.pid"
log="$state/registry.log"

say() { echo "[registry.sh] $*" >&2; }

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        port_open 127.0.0.1 "$p" || { echo "$p"; return; }
    done
    say "found no free port"
    exit 1
}

url_of() { echo "http://127.0.0.1:$1/apis/ccompat/v7"; }

answers() {  # url: the Confluent-compatible API lists subjects
    curl -fsS --max-time 5 "$1/subjects" >/dev/null 2>&1
}

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

build_registry() {
    if [[ -f "$build/.complete" ]]; then
        return
    fi
    say "building Apicurio Registry $version with Maven (once; cached in $build)"
    rm -rf "$build"
    mkdir -p "$build"
    cp -r "$here/registry/." "$build/src-project"
    mvn -q -B -f "$build/src-project/pom.xml" package -DskipTests >&2
    mv "$build/src-project/target/lib" "$build/lib"
    mv "$build/src-project/target/"*-runner.jar "$build/registry-runner.jar"
    rm -rf "$build/src-project"
    touch "$build/.complete"
}

start() {
    if [[ -n "${DRIFTLINE_TEST_SCHEMA_REGISTRY_URL:-}" ]]; then
        say "using the existing registry at $DRIFTLINE_TEST_SCHEMA_REGISTRY_URL; starting nothing"
        answers "$DRIFTLINE_TEST_SCHEMA_REGISTRY_URL" || { say "no registry answers there"; exit 1; }
        echo "export DRIFTLINE_TEST_SCHEMA_REGISTRY_URL=$DRIFTLINE_TEST_SCHEMA_REGISTRY_URL"
        return
    fi
    if running; then
        say "registry already running (pid $(cat "$pidfile"))"
        url
        return
    fi
    command -v java >/dev/null || { say "java not found: install a JDK (17+)"; exit 1; }
    command -v curl >/dev/null || { say "curl not found"; exit 1; }
    build_registry
    local port="${REGISTRY_PORT:-}"
    [[ -n "$port" ]] || port="$(free_port)"
    if port_open 127.0.0.1 "$port"; then
        say "port $port is taken by another process; set REGISTRY_PORT"
        exit 1
    fi
    rm -rf "$state"
    mkdir -p "$state"
    echo "$port" >"$state/port"
    say "starting Apicurio Registry $version (in-memory) on 127.0.0.1:$port"
    local t0=$SECONDS
    HTTP_PORT="$port" QUARKUS_HTTP_HOST=127.0.0.1 QUARKUS_LOG_CONSOLE_LEVEL=WARN \
        nohup java -Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -jar "$build/registry-runner.jar" >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 240); do
        if ! running; then
            say "registry exited during start-up; last lines of its log:"
            tail -n 40 "$log" >&2 || true
            rm -f "$pidfile"
            exit 1
        fi
        if answers "$(url_of "$port")"; then
            say "registry ready in $((SECONDS - t0)) s: $(url_of "$port") (pid $(cat "$pidfile"), log $log)"
            url
            return
        fi
        sleep 0.5
    done
    say "registry did not answer within 120 s; last lines of its log:"
    tail -n 40 "$log" >&2 || true
    stop
    exit 1
}

url() {
    [[ -f "$state/port" ]] || { say "no registry started by this script"; exit 1; }
    echo "export DRIFTLINE_TEST_SCHEMA_REGISTRY_URL=$(url_of "$(cat "$state/port")")"
}

stop() { stop_pidfile registry "$pidfile" 20; }

status() {
    local target="${DRIFTLINE_TEST_SCHEMA_REGISTRY_URL:-}"
    [[ -n "$target" || ! -f "$state/port" ]] || target="$(url_of "$(cat "$state/port")")"
    if [[ -n "$target" ]] && answers "$target"; then
        say "registry answers at $target"
    else
        say "no registry answers${target:+ at $target}"
        exit 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    status) status ;;
    *) echo "usage: $0 start|stop|url|status" >&2; exit 2 ;;
esac
