"""HTTP serving of policy bundles: FastAPI over the torch-free bundle runtime.

Nothing in this package imports torch; it needs only numpy, onnxruntime and the web stack.
"""

__version__ = "0.1.0"
