"""Shape arithmetic that ops, backends, models and benchmarks share."""


def output_size(size, kernel, stride, padding, dilation=1):
    """How many windows fit along one axis: floor((size + before + after - dilation*(kernel-1) - 1) / stride) + 1.

    padding is an int (as much before as after) or a (before, after) pair. With
    dilation 1 and padding p on both sides this is floor((size + 2p - kernel) / stride) + 1,
    the paper's and PyTorch's rule for conv and pooling; dilation d spreads the kernel's
    taps d apart, so the window spans d*(kernel-1) + 1 positions.
    """
    before, after = (padding, padding) if isinstance(padding, int) else padding
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size, kernel, stride, pad_begin, pad_end, ceil_mode=False):
    """The number of pooling windows along one axis, PyTorch's rule:

    floor((size + pad_begin + pad_end - kernel) / stride) + 1, or with ceil_mode the
    ceiling (Caffe's rounding: a last, partial window covers what the floor leaves
    out), minus one when that last window would start beyond the input and its
    leading padding (it would hold only padding).
    """
    span = size + pad_begin + pad_end - kernel
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def same_padding(size, kernel, stride=1, dilation=1):
    """(begin, end) padding of one axis for padding="same": the output has ceil(size / stride)
    entries (size itself at stride 1), and the padding it takes, (out - 1) * stride +
    dilation * (kernel - 1) + 1 - size, is split with the odd one at the end (ONNX's
    SAME_UPPER, which PyTorch's conv2d(padding="same") and Keras also do)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def four_pads(padding):
    """(top, bottom, left, right) from itself, or from an (h, w) pair (the same on both sides)."""
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    return tuple(padding)


def pool_output_shape(x_shape, kernel, stride, padding, ceil_mode=False):
    """(OH, OW) of pooling x: (N, C, H, W); padding (top, bottom, left, right) or an (h, w) pair."""
    top, bottom, left, right = four_pads(padding)
    return (pool_output_size(x_shape[2], kernel[0], stride[0], top, bottom, ceil_mode),
            pool_output_size(x_shape[3], kernel[1], stride[1], left, right, ceil_mode))


def resolve_padding(padding, input_size, kernel, stride, dilation=(1, 1)):
    """padding as (top, bottom, left, right): "valid" is no padding, "same" is same_padding's
    along each axis of input_size (H, W); a 4-tuple is returned as it is."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        return (same_padding(input_size[0], kernel[0], stride[0], dilation[0])
                + same_padding(input_size[1], kernel[1], stride[1], dilation[1]))
    return four_pads(padding)
