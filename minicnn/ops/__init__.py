"""Every op of minicnn, one Function class each (see minicnn/autograd.py), grouped by family.

    tensor_ops.py   arithmetic, reductions, shapes, indexing (the Tensor methods), cat/stack
    conv.py         conv2d, linear
    pool.py         max_pool2d, avg_pool2d, global_avg_pool2d
    norm.py         local_response_norm
    activation.py   relu, leaky_relu, sigmoid, tanh, dropout
    loss.py         softmax, log_softmax, cross_entropy, binary_cross_entropy_with_logits
    checks.py       the argument checks the ops share

minicnn.functional re-exports the public functions; the classes are the graph's
nodes (``y.grad_fn`` is a ``Conv2d`` instance, ...).
"""
