#!/usr/bin/env bash
# Build the C examples against a built libgstack.
#
#   examples/c/build.sh LIBDIR OUTDIR
#
# LIBDIR holds libgstack.a and libgstack.so (target/release, or
# target/aarch64-unknown-linux-gnu/release); CC picks the compiler (cc, or
# aarch64-linux-gnu-gcc for aarch64).  Makes:
#   OUTDIR/pipeline         native goroutines and channels, static library
#   OUTDIR/managed          managed recursion (asm macros), shared library
#                           (found at run time through an rpath to LIBDIR)
#   OUTDIR/managed_static   the same, static library
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
libdir=$(cd "${1:?usage: build.sh LIBDIR OUTDIR}" && pwd)
out=${2:?usage: build.sh LIBDIR OUTDIR}
mkdir -p "$out"
CC=${CC:-cc}

case "$($CC -dumpmachine)" in
    x86_64*) arch=x86_64 ;;
    aarch64*) arch=aarch64 ;;
    *) echo "build.sh: unsupported target $($CC -dumpmachine)" >&2; exit 2 ;;
esac

# What the static library needs besides libc (cargo rustc -- --print
# native-static-libs).
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl"
cflags="-std=gnu11 -O2 -g -Wall -Wextra -Werror -I$root/include"

set -x
$CC $cflags -o "$out/pipeline" "$here/pipeline.c" "$libdir/libgstack.a" $static_libs
$CC $cflags -o "$out/managed_static" "$here/managed.c" "$here/recurse_$arch.S" \
    "$libdir/libgstack.a" $static_libs
$CC $cflags -o "$out/managed" "$here/managed.c" "$here/recurse_$arch.S" \
    -L"$libdir" -lgstack -Wl,-rpath,"$libdir" -Wl,-z,now
