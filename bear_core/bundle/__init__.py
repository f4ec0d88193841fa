"""Torch-free policy bundles: a directory of ONNX graphs plus manifest.json, run with onnxruntime.

Imports only numpy, onnxruntime and the standard library: this is the part of bear_core that
serving processes load.
"""

from bear_core.bundle.manifest import (
    BUNDLE_FORMAT,
    FORMAT_VERSION,
    GRAPH_FILES,
    MANIFEST_FILE,
    Manifest,
    read_manifest,
    sha256_file,
)
from bear_core.bundle.runtime import PolicyBundle, load_bundle
from bear_core.errors import BundleError

__all__ = [
    "BUNDLE_FORMAT",
    "FORMAT_VERSION",
    "GRAPH_FILES",
    "MANIFEST_FILE",
    "BundleError",
    "Manifest",
    "PolicyBundle",
    "load_bundle",
    "read_manifest",
    "sha256_file",
]
