"""Every op of minicnn, one Function class each (see minicnn/autograd.py), grouped by family.

    tensor_ops.py   arithmetic, reductions, shapes, indexing (the Tensor methods), cat/stack
    conv.py         conv2d, linear
    pool.py         max_pool2d, avg_pool2d, global_avg_pool2d, adaptive_avg_pool2d, max_unpool2d
    norm.py         local_response_norm, batch_norm
    activation.py   relu, leaky_relu, sigmoid, tanh, dropout, dropout2d
    loss.py         softmax, log_softmax, cross_entropy, nll_loss, mse_loss, binary_cross_entropy_with_logits
    checks.py       the argument checks the ops share

minicnn.functional re-exports the public functions; the classes are the graph's
nodes (``y.grad_fn`` is a ``Conv2d`` instance, ...).
"""
