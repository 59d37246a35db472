"""Spark entry point: ``spark-submit --py-files batch_inference.zip main.py --manifest ...``.

All logic lives in the ``batch_inference`` package shipped in the zip; see ``--help``.
"""

import sys

from batch_inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
