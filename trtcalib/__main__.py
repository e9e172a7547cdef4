"""`python -m trtcalib` is the same as the `trtcalib` console script."""

from trtcalib.cli import run

run()
