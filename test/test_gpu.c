// test_gpu.c - (tests are added here)
#include "test.h"

void register_gpu_tests(void) {}
