"""Export of trained models: the greedy policy as TorchScript or ONNX, and policy bundles (ONNX
graphs plus a sealed manifest) for the torch-free runtime in `bear_core.bundle`."""
