#!/bin/bash
# build.sh [extra compiler flags] - the CUDA path run on the CPU, for machines without a GPU.
# Builds build/emu/test_runner, train, eval and bench with every cuda/*.cu kernel executed by emu.cpp: one fiber per
# CUDA thread, real __syncthreads and warp-shuffle barriers, launch-configuration checks, and a naive cuBLAS SGEMM
# with cuBLAS's argument checks. It checks index math, launch geometry and the row-major GEMM calls; it says
# nothing about speed, memory coalescing or races between blocks, and it is no substitute for a real GPU run.
#   bash cuda/emu/build.sh && EMU_PROTECT=1 build/emu/test_runner gpu
#   bash cuda/emu/build.sh -fsanitize=address,undefined   (exact-size device allocations, so ASan sees overruns
#                                                          past the end of a cudaMalloc'd block, not of the pool's)
# EMU_PROTECT=1 keeps device memory unreadable outside kernels and copies: host code that dereferences a device
# pointer crashes, as it would with a real GPU.
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EMU=$ROOT/cuda/emu
OUT=$ROOT/build/emu
EXTRA="$*"
mkdir -p "$OUT/obj" "$OUT/gen"
# the OpenBLAS the Makefile uses (the OpenMP build), where it is installed
OPENBLAS_DIR=${OPENBLAS_DIR:-/usr/lib/x86_64-linux-gnu/openblas-openmp}
OPENBLAS_INC=${OPENBLAS_INC:-/usr/include/x86_64-linux-gnu/openblas-openmp}
BLAS_INC="" BLAS_LIB=""
[ -d "$OPENBLAS_INC" ] && BLAS_INC="-I$OPENBLAS_INC"
[ -d "$OPENBLAS_DIR" ] && BLAS_LIB="-L$OPENBLAS_DIR -Wl,-rpath,$OPENBLAS_DIR"
CFLAGS="-std=c11 -O1 -g -D_GNU_SOURCE -fopenmp -DUSE_CUDA -I$EMU/include $BLAS_INC $EXTRA"
CXXFLAGS="-std=c++20 -O1 -g -DUSE_CUDA -I$EMU/include -Wall -Wextra -Wno-unused-parameter $EXTRA"
lib=()
tests=()
for f in "$ROOT"/base/*.c "$ROOT"/io/*.c "$ROOT"/tensor/*.c "$ROOT"/comm/*.c "$ROOT"/autograd/*.c "$ROOT"/ops/*.c "$ROOT"/model/*.c "$ROOT"/data/*.c "$ROOT"/test/*.c; do
    [ -e "$f" ] || continue   # a folder without C files yet
    rel=${f#$ROOT/}
    o=$OUT/obj/${rel//\//_}.o
    gcc $CFLAGS -c "$f" -o "$o"
    case $rel in test/*) tests+=("$o") ;; *) lib+=("$o") ;; esac
done
for f in "$ROOT"/cuda/*.cu; do
    name=$(basename "$f" .cu)
    python3 "$EMU/convert.py" "$f" "$OUT/gen/$name.cpp"
    g++ $CXXFLAGS -I"$ROOT/cuda" -c "$OUT/gen/$name.cpp" -o "$OUT/obj/cuda_$name.o"
    lib+=("$OUT/obj/cuda_$name.o")
done
g++ $CXXFLAGS -c "$EMU/emu.cpp" -o "$OUT/obj/emu.o"
for prog in train eval driver; do gcc $CFLAGS -c "$ROOT/$prog.c" -o "$OUT/obj/$prog.o"; done
gcc $CFLAGS -c "$ROOT/bench/bench.c" -o "$OUT/obj/bench.o"
LIBS="$BLAS_LIB -lopenblas -lturbojpeg -lz -lm -lpthread"
link() { g++ -fopenmp $EXTRA "$@" "${lib[@]}" "$OUT/obj/emu.o" $LIBS; }
link "${tests[@]}" -o "$OUT/test_runner"
link "$OUT/obj/train.o" "$OUT/obj/driver.o" -o "$OUT/train"
link "$OUT/obj/eval.o" "$OUT/obj/driver.o" -o "$OUT/eval"
link "$OUT/obj/bench.o" -o "$OUT/bench"
echo "built $OUT/test_runner, train, eval and bench (CUDA kernels emulated on the CPU)"
