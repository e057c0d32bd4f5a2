// dist.h - the autograd op of data-parallel training (comm/): the rows of every process's tensor gathered, with
// the matching reduce-scatter as its backward. (Synchronised batch norm lives in norm.c, in op_batchnorm.)
#ifndef DIST_H
#define DIST_H

#include "../autograd/autograd.h"

// x: (n, ...) on every process -> (size * n, ...): the processes' rows in rank order. Backward: each process's
// gradient is the sum, over all processes, of the gradient at its rows (reduce-scatter), so a loss computed on
// every process from the gathered rows trains each process's own rows as one process computing all would.
// With one process it is a copy.
Tensor *op_all_gather(Tensor *x);

#endif
