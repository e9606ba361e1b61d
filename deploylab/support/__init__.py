"""Which ONNX operators each engine really runs, measured rather than assumed.

Engines differ in ONNX support (the third of the notes' common problems). Two sources tell
how much:

- **Measured here**: the ONNX conformance *node* tests (one small model per operator
  variant, with reference inputs and outputs; :mod:`deploylab.support.cases`) run through
  deploylab's own ONNX Runtime and OpenVINO runners with the settings the course uses (CPU,
  all graph optimizations; OpenVINO with f32 inference precision;
  :mod:`deploylab.support.runs`). Each case ends as ``pass``, ``wrong`` (ran, but the
  outputs differ beyond ``rtol=1e-3, atol=1e-5`` or have another shape/dtype),
  ``load_error`` (the engine refused the model), ``run_error`` (it loaded but failed to
  run), or ``skipped`` (the case feeds a dtype numpy/the engines' Python APIs cannot
  carry, such as bfloat16 or float8; that says nothing about the engine).
  :func:`build_support_matrix` aggregates the cases per operator and opset and writes
  ``data/support_matrix.json`` together with the versions measured
  (:mod:`deploylab.support.matrix`).
- **Documented**: TensorRT cannot be installed on a machine without an NVIDIA GPU, so
  its column comes from NVIDIA's ONNX-TensorRT operator table, kept with its source and
  date in ``data/tensorrt_onnx_ops.json`` (:mod:`deploylab.support.nvidia`), for the
  operators this course's models and demos use.

:func:`check_support` (:mod:`deploylab.support.report`) applies both to one ONNX file and
also *tries* to load the file in each engine, so a verdict never rests on the table alone.
"""

from deploylab.support.cases import (
    ConformanceCase,
    case_source,
    conformance_case,
    domain_name,
    iter_conformance_cases,
    node_test_dir,
    opset_for,
)
from deploylab.support.matrix import (
    MATRIX_FORMAT,
    MATRIX_PATH,
    MEASURED_BACKENDS,
    CaseBreakdown,
    MatrixStatus,
    SupportMatrix,
    build_support_matrix,
    load_support_matrix,
    versions,
)
from deploylab.support.nvidia import (
    TENSORRT_OPS_PATH,
    TensorRTOpTable,
    read_tensorrt_op_table,
    tensorrt_documented,
    tensorrt_op_table,
)
from deploylab.support.report import (
    TENSORRT_RECIPE_HINT,
    LoadResult,
    OpSupport,
    SupportReport,
    check_support,
    model_operators,
    try_load,
)
from deploylab.support.runs import (
    ATOL,
    CASE_STATUSES,
    CONFORMANCE_BACKENDS,
    FAILING_STATUSES,
    RANDOM_OPS,
    RTOL,
    CaseRun,
    CaseRunner,
    is_random,
    outputs_match,
    rerun_case,
    run_case,
    run_case_values,
)
from deploylab.text import engine_error_summary  # where tests and notebooks have imported it from

__all__ = [
    "ATOL", "CASE_STATUSES", "CONFORMANCE_BACKENDS", "FAILING_STATUSES", "MATRIX_FORMAT", "MATRIX_PATH",
    "MEASURED_BACKENDS", "RANDOM_OPS", "RTOL", "TENSORRT_OPS_PATH", "TENSORRT_RECIPE_HINT",
    "CaseBreakdown", "CaseRun", "CaseRunner", "ConformanceCase", "LoadResult", "MatrixStatus", "OpSupport",
    "SupportMatrix", "SupportReport", "TensorRTOpTable",
    "build_support_matrix", "case_source", "check_support", "conformance_case", "domain_name",
    "engine_error_summary", "is_random", "iter_conformance_cases", "load_support_matrix", "model_operators",
    "node_test_dir", "opset_for", "outputs_match", "read_tensorrt_op_table", "rerun_case", "run_case",
    "run_case_values", "tensorrt_documented", "tensorrt_op_table", "try_load", "versions",
]
