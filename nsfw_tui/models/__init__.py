"""Torch-free models: the registry (model id to scorer), ONNX files and imports, adapted heads."""
