"""rules_pure_model's code generator: an ONNX model in, dependency-free C++ out."""
