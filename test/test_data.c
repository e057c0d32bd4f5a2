// test_data.c - (tests are added here)
#include "test.h"

void register_data_tests(void) {}
