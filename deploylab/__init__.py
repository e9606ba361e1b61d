"""deploylab: deploy a trained PyTorch model with ONNX, ONNX Runtime, TensorRT and OpenVINO.

The package holds the real implementations behind the course notebooks: models and
data, export to ONNX, ONNX tools, backends, comparison and benchmarking. Heavy and
optional engines are imported only by the module that needs them.
"""

__version__ = "0.1.0"

from deploylab.telemetry import disable_engine_telemetry

disable_engine_telemetry()  # before any engine import: `import openvino` alone posts an event
