#!/usr/bin/env bash
# gpu_pack.sh - makes .gpu/, what tools/gpu_check.sh needs on a bare GPU machine beside the working tree
# (carried there by the device tool's `carry: [".gpu"]`; see tools/README.md). Run here, from any folder.
#   .gpu/sysroot.tar.xz  the headers and shared libraries the build and the programs need that the GPU image may
#                        lack: OpenBLAS (OpenMP build) with libgfortran and libquadmath, libturbojpeg, zlib,
#                        libgomp, and the cblas / zlib / turbojpeg / stb headers (from this machine's Debian packages)
#   .gpu/prebuilt.tar.xz build/train, eval, test_runner and bench built here (CUDA, sm_80 + sm_90, MPI=0): the
#                        fallback when the build there fails
#   .gpu/cifar10.tar.gz  the data subset of the real run: N_TRAIN training images (default 50000: all) and N_TEST
#                        test images (default 10000: all) of ../shared/datasets/cifar10, the first of each class in
#                        file-name order, as root/{train,test}/<class>/NNNN.jpg (JPEG bytes unchanged)
#   .gpu/cifar10-tiny.tar.gz  20 training and 10 test images per class: the emulator rehearsal's dataset
# .gpu/ is ignored through .git/info/exclude (added here when missing). Prints the size that travels.
#   N_TRAIN=40000 bash tools/gpu_pack.sh     SKIP_PREBUILT=1 (no fallback binaries)    CIFAR=/path/to/cifar10
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PACK=$ROOT/.gpu
CIFAR=${CIFAR:-$ROOT/../shared/datasets/cifar10}
N_TRAIN=${N_TRAIN:-50000}
N_TEST=${N_TEST:-10000}
OPENBLAS_DIR=${OPENBLAS_DIR:-/usr/lib/x86_64-linux-gnu/openblas-openmp}
OPENBLAS_INC=${OPENBLAS_INC:-/usr/include/x86_64-linux-gnu/openblas-openmp}
LIBDIR=/lib/x86_64-linux-gnu
grep -qx '/.gpu/' .git/info/exclude 2> /dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf "$PACK"
mkdir -p "$PACK"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== sysroot: headers and shared libraries"
mkdir -p "$tmp/sysroot/include/stb" "$tmp/sysroot/lib"
cp "$OPENBLAS_INC"/*.h "$tmp/sysroot/include/"
cp /usr/include/zlib.h /usr/include/zconf.h /usr/include/turbojpeg.h "$tmp/sysroot/include/"
cp /usr/include/stb/stb_image.h /usr/include/stb/stb_image_write.h "$tmp/sysroot/include/stb/"
# real files under their sonames; gpu_check.sh adds the unversioned names the linker looks for
cp -L "$OPENBLAS_DIR/libopenblas.so.0" "$tmp/sysroot/lib/libopenblas.so.0"
for lib in libgfortran.so.5 libquadmath.so.0 libturbojpeg.so.0 libz.so.1 libgomp.so.1; do
    cp -L "$LIBDIR/$lib" "$tmp/sysroot/lib/$lib" 2> /dev/null || cp -L "/usr/lib/x86_64-linux-gnu/$lib" "$tmp/sysroot/lib/$lib"
done
tar -C "$tmp" -cf - sysroot | xz -6 -T2 > "$PACK/sysroot.tar.xz"

if [ "${SKIP_PREBUILT:-0}" != 1 ]; then
    echo "== prebuilt binaries (CUDA build for sm_80 and sm_90, MPI=0, in build/gpu-prebuilt)"
    make -j2 BUILD=build/gpu-prebuilt GPU=1 MPI=0 build/gpu-prebuilt/train build/gpu-prebuilt/eval \
        build/gpu-prebuilt/test_runner build/gpu-prebuilt/bench > "$tmp/make.log" 2>&1 || { tail -20 "$tmp/make.log"; exit 1; }
    tar -C build/gpu-prebuilt -cf - train eval test_runner bench | xz -6 -T2 > "$PACK/prebuilt.tar.xz"
fi

# subset ROOT_NAME PER_CLASS_TRAIN PER_CLASS_TEST OUT.tar.gz
subset() {
    local name=$1 ntr=$2 nte=$3 out=$4 list=$tmp/$1.list
    : > "$list"
    for split in train test; do
        local n=$ntr
        [ "$split" = test ] && n=$nte
        for cls in $(ls "$CIFAR/$split"); do
            ls "$CIFAR/$split/$cls" | sort | sed -n "1,${n}p" | sed "s#^#$split/$cls/#" >> "$list"
        done
    done
    mkdir -p "$tmp/$name"
    (cd "$CIFAR" && tar -cf - -T "$list") | tar -C "$tmp/$name" -xf -
    tar -C "$tmp" -czf "$out" "$name"
    echo "   $out: $(grep -c '^train/' "$list") train + $(grep -c '^test/' "$list") test images, $(du -h "$out" | cut -f1)"
}
echo "== CIFAR-10 subsets from $CIFAR"
n_classes=$(ls "$CIFAR/train" | wc -l)
subset cifar10 $((N_TRAIN / n_classes)) $((N_TEST / n_classes)) "$PACK/cifar10.tar.gz"
subset cifar10-tiny 20 10 "$PACK/cifar10-tiny.tar.gz"

tree=$(git ls-files -co --exclude-standard -z | xargs -0 cat 2> /dev/null | wc -c)
pack=$(du -cb "$PACK" | tail -1 | cut -f1)
echo "== .gpu/: $(du -sh "$PACK" | cut -f1) ($(ls "$PACK" | tr '\n' ' ')); working tree $((tree / 1048576)) MiB;" \
     "together $(((tree + pack) / 1048576)) MiB of the 64 MiB that travel"
[ $((tree + pack)) -lt $((64 * 1048576)) ] || { echo "gpu_pack.sh: over 64 MiB: use a smaller N_TRAIN" >&2; exit 1; }
