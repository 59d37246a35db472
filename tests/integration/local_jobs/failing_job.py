"""A job that fails after starting Spark: the sensor must report it with the driver log."""

import sys

from pyspark import SparkContext

sc = SparkContext()
assert sc.parallelize(range(4), 2).count() == 4
print("deliberate failure after a successful Spark stage", file=sys.stderr)
sc.stop()
sys.exit(3)
