#!/bin/sh
# Checks kiln as a user gets it from `cmake --install`: installs the build in BUILD_DIR into a
# temporary prefix, then, using only that prefix,
#   - compiles every public header on its own (C11, -Wpedantic -Werror; C++ too when c++ is
#     there), so no header needs a source-tree path;
#   - checks that no installed text file (kiln.pc, the CMake package) names the source or
#     build tree;
#   - builds examples/ both ways: make with pkg-config (PKG_CONFIG_PATH) and CMake with
#     find_package (CMAKE_PREFIX_PATH), each with libkiln.so and with libkiln.a;
#   - runs every built example for a few batches on DATA and the installed `kiln --version`.
# Any failure stops it with a message and a non-zero status.
#   scripts/check_install.sh BUILD_DIR [DATA]     DATA: fashion-mnist (the default) or an IDX folder
# Exit 77 (ctest: skipped) when DATA is fashion-mnist and its Debian package is not installed.
# Run by .ci/run and by the ctest test `install` (cmake/install.cmake).
set -eu
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [DATA]" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "$1" && pwd)
DATA=${2:-fashion-mnist}
BATCHES=${KILN_CHECK_BATCHES:-50}
if [ "$DATA" = fashion-mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "check_install: skipped: /usr/share/datasets/fashion-mnist absent (apt-get install dataset-fashion-mnist)"
    exit 77
fi
case "$DATA" in /*|fashion-mnist) ;; *) DATA="$PWD/$DATA" ;; esac
T=$(mktemp -d /tmp/kiln_install.XXXXXX)
trap 'rm -rf "$T"' EXIT
P="$T/prefix"
fail() { echo "check_install: FAILED: $*" >&2; exit 1; }
step() { echo "check_install: $*"; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

step "cmake --install $B --prefix $P"
cmake --install "$B" --prefix "$P" >"$T/install.log" 2>&1 || { cat "$T/install.log" >&2; fail "cmake --install"; }
PC=$(find "$P" -name kiln.pc | head -n 1)
[ -n "$PC" ] || fail "no kiln.pc installed"
LIBDIR=$(dirname "$(dirname "$PC")")
for f in "$P/bin/kiln" "$LIBDIR/libkiln.a" "$LIBDIR/libkiln.so" "$P/include/kiln.h" "$P/include/kiln/core.h" \
         "$LIBDIR/cmake/kiln/kilnConfig.cmake" "$LIBDIR/cmake/kiln/kilnConfigVersion.cmake"; do
    [ -e "$f" ] || fail "$f was not installed"
done
"$P/bin/kiln" --version >/dev/null || fail "the installed kiln --version"
if grep -rIl -e "$SRC" -e "$B" "$P" >"$T/leaks" 2>/dev/null; then
    fail "installed files name the source or build tree: $(tr '\n' ' ' <"$T/leaks")"
fi

step "public headers, each on its own, from $P/include only"
cd "$T"
CC=${CC:-cc}
for h in "$P"/include/kiln.h "$P"/include/kiln/*.h; do
    rel=${h#"$P/include/"}
    printf '#include <%s>\nint main(void) { return 0; }\n' "$rel" >"$T/h.c"
    "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$P/include" "$T/h.c" ||
        fail "$rel does not compile on its own (C11)"
    if command -v c++ >/dev/null 2>&1; then
        c++ -x c++ -Wall -Wextra -Werror -fsyntax-only -I"$P/include" "$T/h.c" || fail "$rel does not compile as C++"
    fi
done

step "examples with make + pkg-config"
cp -r "$SRC/examples" "$T/make"
PKG_CONFIG_PATH="$LIBDIR/pkgconfig" make -s -C "$T/make" >"$T/make.log" 2>&1 || { cat "$T/make.log" >&2; fail "make (pkg-config)"; }

step "examples with cmake + find_package(kiln)"
cmake -S "$SRC/examples" -B "$T/cmake" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_BUILD_TYPE=Release >"$T/cmake.log" 2>&1 &&
    cmake --build "$T/cmake" >>"$T/cmake.log" 2>&1 || { cat "$T/cmake.log" >&2; fail "cmake (find_package)"; }

for exe in "$T"/make/fashion_mnist "$T"/make/fashion_mnist_static "$T"/cmake/fashion_mnist "$T"/cmake/fashion_mnist_static; do
    [ -x "$exe" ] || fail "$exe was not built"
    case "$exe" in
    *_static) ! ldd "$exe" | grep -q libkiln || fail "$exe should not need libkiln.so" ;;
    *) ldd "$exe" | grep -q "$P/.*libkiln.so" || fail "$exe does not load the installed libkiln.so: $(ldd "$exe" | grep libkiln)" ;;
    esac
    name=$(basename "$(dirname "$exe")")_$(basename "$exe")
    mkdir "$T/run_$name"
    step "run $name $DATA --batches $BATCHES"
    rc=0
    "$exe" "$DATA" --batches "$BATCHES" --out "$T/run_$name" >"$T/run_$name.log" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || { cat "$T/run_$name.log" >&2; fail "$exe exited with status $rc"; }
    grep -q "^loaded model: accuracy " "$T/run_$name.log" || { cat "$T/run_$name.log" >&2; fail "$exe printed no predictions"; }
    [ -s "$T/run_$name/model.safetensors" ] && [ -s "$T/run_$name/model.json" ] || fail "$exe exported no model"
done
# The four builds run the same deterministic training: their results (valid loss, accuracy,
# predictions) must agree to the last digit printed.
for log in "$T"/run_*.log; do grep -E '^(valid |loaded model|most confused)' "$log" >"$log.cmp"; done
for log in "$T"/run_*.log; do
    cmp -s "$T/run_make_fashion_mnist.log.cmp" "$log.cmp" ||
        { diff "$T/run_make_fashion_mnist.log.cmp" "$log.cmp" >&2; fail "$log differs from the first build's output"; }
done
cat "$T/run_make_fashion_mnist.log"
step "ok"
