#!/usr/bin/env bash
# The C side of gstack, for one architecture: build libgstack (release),
# the C examples and C tests against it, run them (aarch64 under
# qemu-user), then install everything into a scratch prefix and build the
# examples again through pkg-config, as a user would.
#   ci/c.sh host       x86-64 (the host)
#   ci/c.sh aarch64    aarch64: aarch64-linux-gnu-gcc + qemu-aarch64
# (The header drift checks and the same programs also run in
# `cargo test --test c_abi`.)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

what=${1:-host}
case "$what" in
    host)
        target=
        cc=${CC:-cc}
        run=()
        ;;
    aarch64)
        target=aarch64-unknown-linux-gnu
        cc=aarch64-linux-gnu-gcc
        run=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
        ;;
    *) echo "usage: ci/c.sh host|aarch64" >&2; exit 2 ;;
esac
case "$($cc -dumpmachine)" in
    x86_64*) arch=x86_64 ;;
    aarch64*) arch=aarch64 ;;
    *) echo "ci/c.sh: unsupported compiler target $($cc -dumpmachine)" >&2; exit 2 ;;
esac

echo "==== C ($what): libgstack.a, libgstack.so"
cargo build --release --lib ${target:+--target "$target"}
targetdir=${CARGO_TARGET_DIR:-$root/target}
libdir=$targetdir/${target:+$target/}release
out=$targetdir/c/$what
rm -rf "$out"
mkdir -p "$out"

echo "==== C ($what): examples and tests"
CC=$cc examples/c/build.sh "$libdir" "$out"
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl"
cflags="-std=gnu11 -O2 -g -Wall -Wextra -Werror -I$root/include"
$cc $cflags -o "$out/errors" tests/c/errors.c "$libdir/libgstack.a" $static_libs
$cc $cflags -o "$out/layout" tests/c/layout.c "$libdir/libgstack.a" $static_libs
for prog in pipeline managed managed_static errors; do
    echo "---- $prog"
    "${run[@]}" "$out/$prog"
done
"${run[@]}" "$out/layout" >/dev/null

echo "==== C ($what): install into a prefix, build with pkg-config"
prefix=$out/prefix
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 644 "$libdir/libgstack.a" "$prefix/lib/"
install -m 755 "$libdir/libgstack.so" "$prefix/lib/"
install -m 644 include/gstack.h include/gstack_asm.h include/gstack_abi.h "$prefix/include/"
for pc in gstack gstack-static; do
    sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "$pc.pc.in" \
        >"$prefix/lib/pkgconfig/$pc.pc"
done
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
pkg-config --exists --print-errors gstack gstack-static
[ "$(pkg-config --modversion gstack)" = "$version" ]
cd "$out"
$cc -O2 -o pc_pipeline_static "$root/examples/c/pipeline.c" $(pkg-config --cflags --libs gstack-static)
$cc -O2 -o pc_managed_shared "$root/examples/c/managed.c" "$root/examples/c/recurse_$arch.S" \
    $(pkg-config --cflags --libs gstack)
"${run[@]}" ./pc_pipeline_static >/dev/null
if [ ${#run[@]} -gt 0 ]; then
    "${run[@]}" -E LD_LIBRARY_PATH="$prefix/lib" ./pc_managed_shared >/dev/null
else
    LD_LIBRARY_PATH="$prefix/lib" ./pc_managed_shared >/dev/null
fi
echo "==== C ($what): ok"
