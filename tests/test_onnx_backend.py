"""ONNX's own backend node tests through mc.onnx.load.

The onnx package generates its backend node tests from the generators in
onnx.backend.test.case.node (the wheels do not ship the generated .pb files): each case is a
one-node model (or a function expanded into several nodes) with inputs and the expected
outputs. Every case with one graph input goes through mc.onnx.load and, when it loads, its
output is compared with ONNX's expected output (the case's own rtol/atol, and the dtype).

The contract: 0 failed, 0 crashed; every case minicnn does not run is refused at load with
mc.onnx's own error naming the node (or the graph input) and the reason. The counts and the
refusals are printed (pytest -s shows them).
"""

import collections
import functools
import re
import warnings

import numpy as np
import pytest

import minicnn as mc
from minicnn.onnx import OnnxImportError

onnx = pytest.importorskip("onnx")


@functools.lru_cache(maxsize=None)
def backend_cases():
    """ONNX's node test cases (generated once per process: the generators register each name once)."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return [case for case in collect_testcases(None) if case.kind == "node"]


def graph_inputs(model):
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def as_array(value):
    from onnx import TensorProto, numpy_helper
    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else value


def names_the_culprit(message, model):
    """Whether a refusal names a node of the graph (by name or first output) or a graph input/output."""
    graph = model.graph
    names = [n.name for n in graph.node if n.name] + [n.output[0] for n in graph.node if n.output]
    names += [v.name for v in list(graph.input) + list(graph.output)]
    return any(f"'{name}'" in message for name in names)


def run_case(case):
    """("passed" | "failed" | "crashed" | "refused", detail)."""
    inputs, outputs = case.data_sets[0]
    try:
        module = mc.onnx.load(case.model)
    except OnnxImportError as e:
        return ("refused", str(e)) if names_the_culprit(str(e), case.model) else \
            ("crashed", f"a refusal that names no node: {e}")
    except Exception as e:                              # anything else is a crash of the importer
        return "crashed", f"load: {type(e).__name__}: {e}"
    try:
        with np.errstate(all="ignore"):
            got = module(as_array(inputs[0]))
        got = got.numpy() if isinstance(got, mc.Tensor) else np.asarray(got)
    except Exception as e:
        return "crashed", f"forward: {type(e).__name__}: {e}"
    expected = [as_array(o) for o in outputs]
    if len(expected) != 1 or not isinstance(expected[0], np.ndarray):
        kinds = [type(e).__name__ for e in expected]
        return "failed", f"loaded, but ONNX expects {len(expected)} outputs of kinds {kinds}"
    want = expected[0]
    if got.shape != want.shape or got.dtype != want.dtype:
        return "failed", f"got {got.dtype} {got.shape}, expected {want.dtype} {want.shape}"
    if not np.allclose(got, want, rtol=case.rtol, atol=case.atol, equal_nan=True):
        return "failed", f"largest difference {np.nanmax(np.abs(got.astype(np.float64) - want)):.3g}"
    return "passed", ""


@pytest.fixture(scope="module")
def results():
    cases = [case for case in backend_cases() if len(graph_inputs(case.model)) == 1]
    return {case.name: run_case(case) for case in cases}


def test_onnx_backend_node_tests_pass_or_are_refused_by_name(results):
    by_outcome = collections.defaultdict(list)
    for name, (outcome, detail) in sorted(results.items()):
        by_outcome[outcome].append(f"{name}: {detail}")
    print(f"\nONNX {onnx.__version__} backend node tests with one input: {len(results)}; "
          + ", ".join(f"{k} {len(v)}" for k, v in sorted(by_outcome.items())))
    print("refused:\n  " + "\n  ".join(by_outcome["refused"]))
    assert by_outcome["failed"] == [] and by_outcome["crashed"] == [], \
        "\n".join(by_outcome["failed"] + by_outcome["crashed"])
    assert len(by_outcome["passed"]) >= 100      # 102 with onnx 1.23: a mass refusal would be a bug


@pytest.mark.parametrize("name", [
    "test_cast_FLOAT_to_DOUBLE", "test_cast_DOUBLE_to_FLOAT", "test_cast_FLOAT16_to_FLOAT",
    "test_cast_INT4_to_FLOAT",
    "test_transpose_default", "test_clip_default_inbounds", "test_maxpool_1d_default", "test_averagepool_1d_default",
    "test_globalmaxpool", "test_globalaveragepool", "test_sum_one_input", "test_mean_one_input",
    "test_maxpool_2d_ceil", "test_averagepool_2d_same_upper", "test_softmax_default_axis",
    "test_flatten_negative_axis1",
])
def test_what_the_importer_used_to_get_wrong_now_passes(results, name):
    assert results[name] == ("passed", "")


@pytest.mark.parametrize("name, reason", [
    ("test_cast_FLOAT_to_FLOAT16", r"Cast \(the node producing 'output'\): it casts to FLOAT16 \(to=10\)"),
    ("test_cast_FLOAT_to_BFLOAT16", r"it casts to BFLOAT16"),
    ("test_maxpool_3d_default", r"MaxPool \(the node producing 'y'\): 3-D pooling \(kernel_shape \[2, 2, 2\]\)"),
    ("test_maxpool_2d_dilations", r"pooling with dilations \(2, 2\)"),
    ("test_maxpool_with_argmax_2d_precomputed_pads", r"its outputs beyond the first \('z'\) are used"),
    ("test_argmax_default_axis_example", r"unsupported op ArgMax in the node producing 'result'"),
    ("test_cast_FLOAT_to_INT4", r"it casts to INT4"),
])
def test_refusals_name_the_node_and_the_reason(results, name, reason):
    outcome, detail = results[name]
    assert outcome == "refused" and re.search(reason, detail), detail
