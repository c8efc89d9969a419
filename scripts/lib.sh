# Shared by scripts/kafka.sh and scripts/registry.sh (sourced, not run). Each script defines
# `say` (its own log prefix) before sourcing this file.

port_open() {  # host port: exit 0 when something listens there
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && exec 3>&- 3<&-
}

stop_pidfile() {  # what pidfile seconds: TERM the process, KILL it after `seconds`
    local what="$1" pidfile="$2" seconds="$3" pid
    if [[ ! -f "$pidfile" ]]; then
        say "no $what started by this script"
        return
    fi
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 $((2 * seconds))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && { say "$what did not stop in $seconds s; killing it"; kill -KILL "$pid"; }
        say "$what stopped (pid $pid)"
    fi
    rm -f "$pidfile"
}
