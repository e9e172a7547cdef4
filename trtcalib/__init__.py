"""trtcalib: TensorRT INT8 calibration with TensorRT-exact CPU statistics.

Importing trtcalib never imports tensorrt, cuda or pycuda: only `trtcalib.trt` does, lazily.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trtcalib")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
