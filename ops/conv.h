// conv.h - 2-D convolution and the spatial ops around it. Legend: N batch, C/Co channels in/out,
// H, W input size, K kernel size, Ho, Wo output size. All tensors NCHW, contiguous.
#ifndef CONV_H
#define CONV_H

#include "../autograd/autograd.h"
#include "dispatch.h"

KERNELS_BEGIN
// out: (N, Co, Ho, Wo) = relu?(conv(x) + b + residual) with Ho = (H + 2*pad - K) / stride + 1 (zero padding);
// x: (N, C, H, W); w: (Co, C, K, K); b: (Co) or NULL; residual: (N, Cr, Ho, Wo), added to the first Cr <= Co
// channels (Cr = Co: out's shape), or NULL; relu: apply ReLU last
DECLARE_KERNEL(void, conv2d_forward, (float *out, const float *x, const float *w, const float *b,
                                      const float *residual, int Cr, bool relu, int N, int C, int H, int W, int Co,
                                      int K, int stride, int pad));
// accumulates dx (N,C,H,W), dw (Co,C,K,K), db (Co); each may be NULL
DECLARE_KERNEL(void, conv2d_backward, (float *dx, float *dw, float *db, const float *dout, const float *x,
                                       const float *w, int N, int C, int H, int W, int Co, int K, int stride, int pad));
// out: (N, C, Ho, Wo), Ho = (H - K) / stride + 1, no padding; mean over each K x K window
DECLARE_KERNEL(void, avgpool2d_forward, (float *out, const float *x, int N, int C, int H, int W, int K, int stride));
DECLARE_KERNEL(void, avgpool2d_backward, (float *dx, const float *dout, int N, int C, int H, int W, int K, int stride));
// out: (N, C, H + 2p, W + 2p), mirror without repeating the edge (torch ReflectionPad2d); requires p < H, p < W
DECLARE_KERNEL(void, reflect_pad2d_forward, (float *out, const float *x, int N, int C, int H, int W, int pad));
DECLARE_KERNEL(void, reflect_pad2d_backward, (float *dx, const float *dout, int N, int C, int H, int W, int pad));
// out: (N, Co, S): channels [0, C) copied from x (N, C, S), channels [C, Co) zero
DECLARE_KERNEL(void, channel_pad_forward, (float *out, const float *x, int N, int C, int Co, int S));
DECLARE_KERNEL(void, channel_pad_backward, (float *dx, const float *dout, int N, int C, int Co, int S));
KERNELS_END

Tensor *op_conv2d(Tensor *x, Tensor *w, Tensor *b, int stride, int pad);  // b may be NULL
// the same convolution with its epilogue fused (one tape tensor instead of two): relu(conv(x) + b), conv(x) + b + r
Tensor *op_conv2d_relu(Tensor *x, Tensor *w, Tensor *b, int stride, int pad);
Tensor *op_conv2d_add(Tensor *x, Tensor *w, Tensor *b, int stride, int pad, Tensor *residual);  // r: output's shape
// conv(x) + b + shortcut(s): s (N, Cs, Hs, Ws) average-pooled by k with stride s_stride, zero channels appended up
// to Co (a residual unit whose width or size changes); neither the pooled nor the padded s is kept for backward
Tensor *op_conv2d_add_shortcut(Tensor *x, Tensor *w, Tensor *b, int stride, int pad, Tensor *s, int k, int s_stride);
Tensor *op_avgpool2d(Tensor *x, int k, int stride);
Tensor *op_reflect_pad2d(Tensor *x, int pad);
Tensor *op_channel_pad(Tensor *x, int channels_out);  // x: (N, C, H, W) -> (N, Co, H, W)

#endif
