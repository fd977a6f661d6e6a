#!/bin/sh
# static_link.sh -- links sentinel-sidecar with its C and C++ libraries taken from their static
# archives (the C_LINKER_LAUNCHER of the target when SENTINEL_SIDECAR_STATIC is on; see
# sidecar/CMakeLists.txt and docs/sidecar.md, "Memory").
#
# Usage: static_link.sh "EXTRA ARGS" -- LINKER COMMAND...
#
# Every argument of the command that names a shared library by its path (DIR/libNAME.so) whose
# static archive DIR/libNAME.a exists is replaced by the archive, in place, so the link order
# CMake computed stays as it is; EXTRA ARGS (split on blanks: paths without spaces) are appended.
# Libraries without an archive (libuv, libc) stay shared. Exit status: the linker's.
set -eu
if [ $# -lt 3 ] || [ "$2" != "--" ]; then
    echo "usage: static_link.sh \"EXTRA ARGS\" -- LINKER COMMAND..." >&2
    exit 2
fi
extra=$1
shift 2
for arg in "$@"; do
    shift
    case $arg in
    /*/lib*.so)
        if [ -f "${arg%.so}.a" ]; then
            arg=${arg%.so}.a
        fi
        ;;
    esac
    set -- "$@" "$arg"
done
# shellcheck disable=SC2086 # the extra arguments are split on purpose
exec "$@" $extra
