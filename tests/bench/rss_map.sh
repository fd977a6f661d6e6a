#!/bin/bash
# rss_map.sh -- what a process's resident set is made of, from /proc/PID/smaps.
#
# Usage: tests/bench/rss_map.sh PID|SMAPS_FILE [--libs]
#
# Prints one line per kind of mapping -- the program's file, each shared library (with --libs;
# else libraries grouped: gRPC core, abseil/re2/c-ares, OpenSSL, GnuTLS and its chain,
# libstdc++, libc), the [heap] (malloc's main arena), the other malloc arenas (threads'),
# thread stacks (with each thread's static TLS, zeroed at its start), large anonymous blocks
# (malloc's mmap'd allocations, >= 128 KiB), small anonymous mappings (libraries' .bss) -- with
# its resident KiB (Rss), the part no other process shares dirty (Private_Dirty: relocated
# data, heap, stacks) and the clean shared part (Shared_Clean: library code and read-only data,
# also counted in every other process that maps them). A file just written (a fresh build) shows
# as Private_Dirty until the kernel writes it back. Reads a saved smaps file as well. Exit
# status 0, 2 on bad usage or an unreadable file. Used for docs/benchmarks.md, "Resident
# memory, mapping by mapping".
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ] || { [ $# -eq 2 ] && [ "$2" != "--libs" ]; }; then
    echo "usage: rss_map.sh PID|SMAPS_FILE [--libs]" >&2
    exit 2
fi
src=$1
[ -f "$src" ] || src=/proc/$1/smaps
if [ ! -r "$src" ]; then
    echo "rss_map.sh: cannot read $src" >&2
    exit 2
fi
per_lib=0
[ "${2:-}" = "--libs" ] && per_lib=1

awk -v per_lib="$per_lib" '
function group(path, n) {
    n = path
    sub(/.*\//, "", n)
    if (per_lib) return "file " n
    if (n ~ /^lib(grpc|gpr|upb|address_sorting)/) return "libs: gRPC core (grpc, gpr, upb, address_sorting)"
    if (n ~ /^lib(absl_|re2|cares)/) return "libs: abseil, re2, c-ares"
    if (n ~ /^lib(ssl|crypto)\./) return "libs: OpenSSL (libssl, libcrypto)"
    if (n ~ /^lib(gnutls|p11-kit|nettle|hogweed|gmp|unistring|tasn1|idn2|ffi)/) return "libs: GnuTLS and its chain (libmicrohttpd)"
    if (n ~ /^lib(stdc\+\+|gcc_s)/) return "libs: libstdc++, libgcc_s"
    if (n ~ /^(libc|libm)\.so|^ld-linux/) return "libs: libc, libm, ld.so"
    if (n ~ /^lib.*\.so/) return "libs: others (microhttpd, uv, zstd, z, yaml, jansson, ...)"
    return "the program file (" n ")"
}
/^[0-9a-f]+-[0-9a-f]+ / {
    m++
    perms[m] = $2
    path[m] = (NF >= 6) ? $6 : ""
    next
}
/^Size:/ { size[m] = $2; next }
/^Rss:/ { rss[m] = $2; next }
/^Private_Dirty:/ { pd[m] = $2; next }
/^Shared_Clean:/ { sc[m] = $2; next }
END {
    for (i = 1; i <= m; i++) {
        p = path[i]
        if (p ~ /^\//) k = group(p)
        else if (p != "") k = p
        else if (perms[i] == "---p") k = ""
        else if (i > 1 && perms[i - 1] == "---p" && path[i - 1] == "" && size[i - 1] == 4)
            k = "thread stacks (each with its static TLS)"
        else if (i < m && perms[i + 1] == "---p" && path[i + 1] == "" && size[i] + size[i + 1] == 65536)
            k = "malloc arenas of threads"
        else if (size[i] >= 128) k = "anonymous >= 128 KiB (large malloc blocks)"
        else k = "anonymous < 128 KiB (libraries'\'' .bss, small mmaps)"
        if (k == "" || rss[i] == 0) continue
        R[k] += rss[i]; D[k] += pd[i]; S[k] += sc[i]
        tr += rss[i]; td += pd[i]; ts += sc[i]
    }
    printf "%-56s %9s %9s %9s\n", "mapping", "Rss KiB", "PrivDirty", "ShClean"
    cmd = "sort -t\"|\" -k2,2nr"
    for (k in R) printf "%-56s|%9d %9d %9d\n", k, R[k], D[k], S[k] | cmd
    close(cmd)
    printf "%-56s %9d %9d %9d\n", "total", tr, td, ts
}' "$src" | sed 's/|/ /'
