"""Export formats: ONNX (with onnxruntime int8) and its runner."""
