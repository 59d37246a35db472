"""Record this process's AWS calls (tests/support/aws_calls.py) when ``$AWS_CALLS_FILE`` is set.

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``: a test puts this folder (and the
repository root) there, and every process it starts, Spark's driver and Python workers included,
records its calls into the same file.
"""

import os

if os.environ.get("AWS_CALLS_FILE"):
    from tests.support.aws_calls import install

    install(os.environ["AWS_CALLS_FILE"])
