// test_model.c - (tests are added here)
#include "test.h"

void register_model_tests(void) {}
