// registry.h - the list of test files; add a line per new file.
#ifndef REGISTRY_H
#define REGISTRY_H
void register_grad_tests(void);
void register_forward_tests(void);
void register_gpu_tests(void);
static void register_all_tests(void) {
    register_grad_tests();
    register_forward_tests();
    register_gpu_tests();
}
#endif
