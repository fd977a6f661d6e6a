#!/usr/bin/env bash
# Installs the Debian 12 packages LLM-Sentinel builds and tests with.
# Idempotent: packages already present are not touched, and `apt-get update`
# runs at most once per invocation, only when something is missing.
set -euo pipefail

# Build toolchain and libraries (see docs/dependencies.md for why each one).
BUILD_PKGS=(
    build-essential cmake pkg-config
    libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
    nanopb libnanopb-dev python3-protobuf
    libuv1-dev libjansson-dev libzstd-dev zlib1g-dev libhiredis-dev libyaml-dev
    libcurl4-openssl-dev libmicrohttpd-dev libsqlite3-dev libgnutls28-dev
    check libsubunit-dev librabbitmq-dev libwslay-dev
)
# Tools the tests use: the official OpenTelemetry JS SDK runs on Node.js; promtool (package
# prometheus, whose service is installed but not started here) checks the /metrics format;
# the injector's TLS test makes its certificates with openssl and talks to it with curl;
# the fuzz targets (tests/fuzz, `make test` and `make fuzz`) need clang with libFuzzer's runtime
# (libclang-rt-14-dev on Debian 12) and llvm-symbolizer (llvm) for readable crash reports.
# The alert-delivery tests (tests/integration/deliver) start their own private Alertmanager,
# RabbitMQ and Redis on free loopback ports; the packages' own services are never started here.
# The dashboard's browser tests (tests/integration/dashboard) drive Debian's chromium, headless,
# through playwright-core.
TEST_PKGS=(nodejs npm prometheus openssl curl jq sqlite3 valgrind clang libclang-rt-14-dev llvm
    prometheus-alertmanager rabbitmq-server redis-server chromium)
# Services of those packages that must not run (they would hold 9093/9094, 5672/25672/4369 and
# 6379, and the tests start private instances instead).
NO_SERVICES=(prometheus-alertmanager rabbitmq-server redis-server)

want=("${BUILD_PKGS[@]}")
if [ "${1:-}" != "--build-only" ]; then
    want+=("${TEST_PKGS[@]}")
fi

missing=()
for p in "${want[@]}"; do
    # nodejs/npm may come from outside Debian's packages (a preinstalled toolchain):
    # a working binary on PATH is as good as the package.
    case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    prometheus) command -v promtool >/dev/null 2>&1 && continue ;;
    esac
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#want[@]} packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
# Keep package scripts from starting services during the install (Debian's policy-rc.d; a host
# that already has one keeps its own).
policy_added=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [ -n "$policy_added" ]; then
    $SUDO rm -f /usr/sbin/policy-rc.d
    trap - EXIT
fi
# ... nor at boot (only the services of packages installed just now: a host's own are left).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for svc in "${NO_SERVICES[@]}"; do
        case " ${missing[*]} " in
        *" $svc "*) $SUDO systemctl disable --now "$svc.service" >/dev/null 2>&1 || true ;;
        esac
    done
    case " ${missing[*]} " in # rabbitmq-server brings Erlang's epmd
    *" rabbitmq-server "*) $SUDO systemctl disable --now epmd.socket epmd.service >/dev/null 2>&1 || true ;;
    esac
fi
# Only promtool is wanted from prometheus: its server would hold port 9090 (the aggregator's).
case " ${missing[*]} " in
*" prometheus "*)
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
    ;;
esac
echo "install-deps: done"
