// rng.c - splitmix64 (Steele, Lea & Flood 2014) and what is drawn from it.
#include "rng.h"

#include <math.h>

#include "base.h"

static const uint64_t GOLDEN_GAMMA = 0x9E3779B97F4A7C15ull;   // 2^64 / golden ratio: splitmix64's increment

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed) { r->state = seed; }
uint64_t rng_u64(Rng *r) { return mix64(r->state += GOLDEN_GAMMA); }
uint32_t rng_u32(Rng *r) { return (uint32_t)(rng_u64(r) >> 32); }
float rng_uniform(Rng *r) { return (float)(rng_u64(r) >> 40) * 0x1p-24f; }
double rng_uniform_double(Rng *r) { return (double)(rng_u64(r) >> 11) * 0x1p-53; }
double rng_range(Rng *r, double lo, double hi) { return lo + (hi - lo) * rng_uniform_double(r); }

float rng_normal(Rng *r) {
    double u1 = 1.0 - rng_uniform_double(r);   // (0, 1]: log(u1) stays finite
    double u2 = rng_uniform_double(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

int rng_int(Rng *r, int n) {
    CHECK(n > 0, "rng_int needs n > 0, got %d", n);
    return (int)(((uint64_t)rng_u32(r) * (uint64_t)n) >> 32);   // multiply-shift: no division, no modulo bias
}

uint64_t rng_hash2(uint64_t a, uint64_t b) { return mix64(mix64(a + GOLDEN_GAMMA) ^ (b + 2 * GOLDEN_GAMMA)); }
uint64_t rng_hash3(uint64_t a, uint64_t b, uint64_t c) { return rng_hash2(rng_hash2(a, b), c); }
