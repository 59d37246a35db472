"""A PySpark job that runs a stage for minutes: a step that is still running when it is killed."""

import time

from pyspark import SparkContext


def main():
    sc = SparkContext.getOrCreate()
    sc.parallelize(range(1), 1).foreach(lambda _: time.sleep(600))


if __name__ == "__main__":
    main()
