// base.h - what every layer of the project needs and nothing more: checked allocation, invariants that stay on
// in release builds, and a monotonic clock. Nothing here knows about tensors, devices, models or datasets, so
// tensor/, data/ and io/ can all stand on it without knowing each other.
#ifndef BASE_H
#define BASE_H

#include <stddef.h>

#ifdef __cplusplus   // the CUDA files (C++) call these too
extern "C" {
#endif

// checked host allocation: exits with file:line on failure, never returns NULL (0 bytes gives a valid pointer)
#define xmalloc(bytes) xmalloc_at((bytes), __FILE__, __LINE__)
#define xcalloc(n, size) xcalloc_at((n), (size), __FILE__, __LINE__)
void *xmalloc_at(size_t bytes, const char *file, int line);
void *xcalloc_at(size_t n, size_t size, const char *file, int line);

// An invariant that stays on in release builds. For programming errors only, never for user input: bad files
// and flags get an explicit check and a one-line message from the caller.
#define CHECK(cond, ...) do { if (!(cond)) check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__); } while (0)
void check_failed(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

double now_seconds(void);   // CLOCK_MONOTONIC, for timing only
double peak_rss_mib(void);  // the process's peak resident memory (VmHWM) in MiB, or -1 where /proc does not say

#ifdef __cplusplus
}
#endif

#endif
