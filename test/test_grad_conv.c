// test_grad_conv.c - (tests are added here)
#include "test.h"

void register_grad_conv_tests(void) {}
