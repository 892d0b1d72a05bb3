"""ONNX: export a minicnn Module (mc.onnx.export), load an ONNX graph as one (mc.onnx.load).

Needs the optional packages onnx (and onnxruntime to run the exported file
elsewhere): pip install "minicnn[onnx]". See docs/onnx.md.
"""

from .export import DEFAULT_OPSET, export, to_onnx
from .load import InvalidOnnxModel, OnnxImportError, OnnxModule, UnsupportedOnnxModel, load

__all__ = ["export", "to_onnx", "load", "OnnxModule", "DEFAULT_OPSET", "OnnxImportError", "InvalidOnnxModel",
           "UnsupportedOnnxModel"]
