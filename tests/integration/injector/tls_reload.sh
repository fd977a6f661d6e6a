#!/bin/sh
# sentinel-injector serve over real TLS: curl (with a throwaway CA made by openssl) against
# 127.0.0.1, certificate replaced on disk and picked up without a restart, a bad certificate
# refused while the good one keeps serving, the required settings, and a clean SIGTERM.
# usage: tls_reload.sh PATH/TO/sentinel-injector
set -eu
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -f "$work/serve.log" ] && tail -20 "$work/serve.log" >&2
    exit 1
}
cd "$work"

# A CA and two server certificates for 127.0.0.1 with different subjects and serials.
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
    -subj /CN=sentinel-test-ca 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > ext.cnf
make_cert() { # name serial
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "$2" -out "$1.crt" \
        -days 2 -extfile ext.cnf 2>/dev/null
}
make_cert injector-one 0x1001
make_cert injector-two 0x2002
cp injector-one.crt tls.crt
cp injector-one.key tls.key

# serve refuses to start without its certificate settings, naming the missing one.
set +e
env -u SENTINEL_TLS_CERT -u SENTINEL_TLS_KEY "$BIN" serve 2> err.txt
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "no certificate: exit $rc, want 2"
grep -q SENTINEL_TLS_CERT err.txt || fail "the error does not name SENTINEL_TLS_CERT: $(cat err.txt)"
set +e
SENTINEL_TLS_CERT=tls.crt "$BIN" serve 2> err.txt
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "no key: exit $rc, want 2"
grep -q SENTINEL_TLS_KEY err.txt || fail "the error does not name SENTINEL_TLS_KEY"
set +e
SENTINEL_TLS_CERT=tls.crt SENTINEL_TLS_KEY=injector-two.key SENTINEL_INJECTOR_ENDPOINT=127.0.0.1:0 \
    "$BIN" serve 2> err.txt
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "mismatched key: exit $rc, want 2"

SENTINEL_TLS_CERT=$work/tls.crt SENTINEL_TLS_KEY=$work/tls.key \
    SENTINEL_INJECTOR_ENDPOINT=127.0.0.1:0 SENTINEL_TLS_RELOAD_INTERVAL=100ms \
    "$BIN" serve 2> serve.log &
pid=$!
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*"msg":"listening".*"port":\([0-9]*\).*/\1/p' serve.log | head -1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || fail "serve did not start"
url=https://127.0.0.1:$port

subject() { # what curl saw
    curl -sS -v --cacert ca.crt "$url/healthz" -o /dev/null 2>&1 | sed -n 's/^\*  *subject: *//p'
}
serial() {
    openssl s_client -connect "127.0.0.1:$port" -CAfile ca.crt </dev/null 2>/dev/null |
        openssl x509 -noout -serial
}

[ "$(curl -sS --cacert ca.crt "$url/healthz")" = ok ] || fail "healthz over TLS"
subject | grep -q 'CN *= *injector-one' || fail "first subject: $(subject)"
[ "$(serial)" = serial=1001 ] || fail "first serial: $(serial)"
# Without the CA the certificate is not trusted: TLS really is verified.
set +e
curl -sS "$url/healthz" -o /dev/null 2>/dev/null
rc=$?
set -e
[ "$rc" -eq 60 ] || fail "curl without the CA: exit $rc, want 60"

# Replace the files (key first: for a moment the pair does not match, which must not matter).
cp injector-two.key tls.key.new && mv tls.key.new tls.key
cp injector-two.crt tls.crt.new && mv tls.crt.new tls.crt
ok=
for _ in $(seq 1 50); do
    if subject | grep -q 'CN *= *injector-two'; then ok=1; break; fi
    sleep 0.1
done
[ -n "$ok" ] || fail "the new certificate was not picked up: $(subject)"
[ "$(serial)" = serial=2002 ] || fail "second serial: $(serial)"
[ "$(curl -sS --cacert ca.crt "$url/healthz")" = ok ] || fail "healthz after the reload"

# A broken certificate is refused; the last good one keeps serving.
echo "not a certificate" > tls.crt.new && mv tls.crt.new tls.crt
sleep 0.5
subject | grep -q 'CN *= *injector-two' || fail "after a bad certificate: $(subject)"
m=$(curl -sS --cacert ca.crt "$url/metrics")
echo "$m" | grep -q '^sentinel_injector_tls_reloads_total{outcome="success"} 1$' ||
    fail "reload success count: $(echo "$m" | grep tls_reloads)"
echo "$m" | grep -q '^sentinel_injector_tls_reloads_total{outcome="failure"} 1$' ||
    fail "reload failure count: $(echo "$m" | grep tls_reloads)"
grep -q '"new certificate refused' serve.log || fail "the refusal is not logged"

# An admission request over the reloaded certificate.
body='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-tls","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"apps","operation":"CREATE","object":{"metadata":{"annotations":{"sentinel.llm-devops.io/inject":"true"}},"spec":{"containers":[{"name":"a","image":"a"}]}}}}'
resp=$(curl -sS --cacert ca.crt -H 'Content-Type: application/json' --data "$body" "$url/mutate")
echo "$resp" | grep -q '"uid":"u-tls"' || fail "mutate: $resp"
echo "$resp" | grep -q '"patchType":"JSONPatch"' || fail "mutate: no patch: $resp"

kill -TERM "$pid"
set +e
wait "$pid"
rc=$?
set -e
pid=
[ "$rc" -eq 0 ] || fail "SIGTERM: exit $rc, want 0"
grep -q '"sentinel-injector stopped"' serve.log || fail "no stop line"
echo "tls_reload: all checks passed"
