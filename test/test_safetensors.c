// test_safetensors.c - (tests are added here)
#include "test.h"

void register_safetensors_tests(void) {}
