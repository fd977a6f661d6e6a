# ports.sh -- sourced by the aggregator integration scripts (bash): free loopback ports.

# free_port NAME: sets NAME to a free loopback port, never one this script got before (the
# kernel may give a port just closed to the next bind, so two calls could otherwise return the
# same port). Not in a $(...) subshell, so the ports given are remembered.
GIVEN_PORTS=" "
free_port() {
    local port i
    for i in $(seq 1 20); do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        case "$GIVEN_PORTS" in *" $port "*) continue ;; esac
        break
    done
    GIVEN_PORTS="$GIVEN_PORTS$port "
    printf -v "$1" '%s' "$port"
}
