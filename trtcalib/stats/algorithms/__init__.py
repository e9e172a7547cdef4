"""Built-in amax algorithms, one per module; importing this package registers them."""

from trtcalib.stats.algorithms import (  # noqa: F401
    entropy,
    legacy,
    minmax,
    mix,
    mse,
    percentile,
)
