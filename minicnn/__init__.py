"""minicnn: a from-scratch CNN engine (import minicnn as mc)."""

from .tensor import Tensor, Parameter, tensor, no_grad, enable_grad, is_grad_enabled
from .autograd import Function
from .creation import zeros, ones, full, rand, randn, arange, from_dlpack
from .ops.tensor_ops import cat, stack
from .device import cuda_available
from .backends import set_cpu_backend, get_cpu_backend, set_cuda_loader, get_cuda_loader, set_num_threads, get_num_threads
from . import functional, nn, models
from .random import manual_seed
from .summary import summary
from .graph import draw_graph, record_gradient_norms
from .explain import explain
from .trace import trace
from .explore import explore
from .gradcheck import gradcheck
from . import optim, data, distributed, callbacks
from .training import fit, evaluate
from .history import History
from .checkpoint import save, load
from . import transfer, weights
from . import onnx

from .trace import trace_script_if_asked as _trace_script_if_asked
_trace_script_if_asked()     # MINICNN_TRACE=1: trace the whole script, print the table at its exit
