// dispatch.h - the one place where an op picks its CPU or CUDA kernel.
// Every kernel exists twice with the same arguments: name_cpu (ops/*.c) and name_cuda (cuda/*.cu).
// KERNEL(dev, name) names the right one; a CPU-only build never references the CUDA symbols.
#ifndef DISPATCH_H
#define DISPATCH_H

#include "../tensor/tensor.h"

#ifdef USE_CUDA
#define KERNEL(dev, name) ((dev) == DEV_CUDA ? name##_cuda : name##_cpu)
#else
#define KERNEL(dev, name) name##_cpu
#endif

// A CPU loop with less work than this (elements, or multiply-adds for the conv helpers) runs on one thread: below it
// an OpenMP fork/join costs more than the loop itself.
#define PARALLEL_MIN_WORK 32768L

// C declarations usable from the .cu files too
#ifdef __cplusplus
#define KERNELS_BEGIN extern "C" {
#define KERNELS_END }
#else
#define KERNELS_BEGIN
#define KERNELS_END
#endif

// Declares the CPU and the CUDA twin of one kernel with one line: DECLARE_KERNEL(void, relu_forward, (...));
#define DECLARE_KERNEL(ret, name, args) ret name##_cpu args; ret name##_cuda args

#endif
