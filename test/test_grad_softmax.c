// test_grad_softmax.c - (tests are added here)
#include "test.h"

void register_grad_softmax_tests(void) {}
