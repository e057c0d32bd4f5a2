// registry.h - every test file's register function; main() calls them in this order.
#ifndef REGISTRY_H
#define REGISTRY_H
void register_grad_tests(void);
void register_grad_conv_tests(void);
void register_grad_softmax_tests(void);
void register_forward_tests(void);
void register_gpu_tests(void);
void register_data_tests(void);
void register_safetensors_tests(void);
void register_model_tests(void);
void register_io_tests(void);
void register_dist_tests(void);
static void register_all_tests(void) {
    register_grad_tests();
    register_grad_conv_tests();
    register_grad_softmax_tests();
    register_forward_tests();
    register_gpu_tests();
    register_data_tests();
    register_safetensors_tests();
    register_model_tests();
    register_io_tests();
    register_dist_tests();
}
#endif
