// rng.h - the project's one random number generator: splitmix64. Tiny, fast, and the same sequence on every
// machine and compiler (no libc rand), so a seed fixes weights, augmentations and data order everywhere.
// Streams that must not depend on scheduling (one per image, per epoch, per step) are seeded with rng_hash2/3 of
// the run seed and their coordinates.
#ifndef RNG_H
#define RNG_H

#include <stdint.h>

typedef struct { uint64_t state; } Rng;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_u64(Rng *r);
uint32_t rng_u32(Rng *r);
float rng_uniform(Rng *r);                        // [0, 1), 24 random bits
double rng_uniform_double(Rng *r);                // [0, 1), 53 random bits
double rng_range(Rng *r, double lo, double hi);   // [lo, hi)
float rng_normal(Rng *r);                         // N(0, 1), Box-Muller
int rng_int(Rng *r, int n);                       // uniform in [0, n), n > 0
uint64_t rng_hash2(uint64_t a, uint64_t b);       // mixes two words into a seed
uint64_t rng_hash3(uint64_t a, uint64_t b, uint64_t c);

#endif
