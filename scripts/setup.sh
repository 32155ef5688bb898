#!/bin/sh
# Installs the Debian 12 packages kiln needs to build, test and run its main job (run as root):
# the build tools and libraries, clang and its libFuzzer runtime (fuzz/, run by CI), and
# dataset-fashion-mnist (the README's data set), Open MPI (libopenmpi-dev, openmpi-bin: data-parallel
# training under mpirun, issue 13; kiln builds without it).
# --dev also installs PyTorch (python3-torch, python3-torchvision) and NLTK (python3-nltk: the
# tokenizer fixture's Treebank oracle) and pandas (python3-pandas: the tabular fixture's fastai
# procs, tests/fixtures/gen_tabular_data.py), which only the fixture
# generators in tests/fixtures/, the full-size parity tests (test_pretrained_torch, skipped
# without it) and the benchmark twins in bench/ need; CI and users do not.
set -eu
PKGS="build-essential cmake pkg-config libdnnl-dev libopenblas-dev libcjson-dev libzip-dev libutf8proc-dev libcriterion-dev libplplot-dev plplot-driver-cairo zlib1g-dev libspng-dev libturbojpeg0-dev dataset-fashion-mnist fonts-dejavu-core time clang libclang-rt-14-dev libopenmpi-dev openmpi-bin"
if [ "${1:-}" = "--dev" ]; then PKGS="$PKGS python3-torch python3-torchvision python3-numpy python3-nltk python3-pandas"; fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "kiln setup: installing$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
echo "kiln setup: all packages present"
