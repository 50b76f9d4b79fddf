#!/bin/sh
# ctest's example_from_install: installs the build's fusedloss::core into a fresh prefix, builds
# examples/cpp against it as an outside project would (find_package), runs the example, and
# checks that the consumer's compile lines carry the flags the target exports.
#   from-install.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > /dev/null
cmake -S "$src/examples/cpp" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON > /dev/null
cmake --build "$tmp/build" > "$tmp/build.log" || { tail -5 "$tmp/build.log"; exit 1; }
grep -q -- '-ffp-contract=off' "$tmp/build/compile_commands.json" || { echo "the consumer was not compiled with -ffp-contract=off"; exit 1; }
"$tmp/build/cross_entropy_example"
