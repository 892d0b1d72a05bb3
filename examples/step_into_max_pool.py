# One max_pool2d on the host kernels: run it under gdb to stop in max_pool_forward<float> (docs/kernels.md)
import numpy as np
import minicnn as mc
mc.set_cpu_backend("kernels")
x = mc.tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
print(mc.functional.max_pool2d(x, 2).data)
