"""Shape arithmetic that ops, backends, models and benchmarks share."""


def output_size(size, kernel, stride, padding):
    """floor((size + 2 padding - kernel) / stride) + 1: the paper's and PyTorch's rule for conv and pooling."""
    return (size + 2 * padding - kernel) // stride + 1
