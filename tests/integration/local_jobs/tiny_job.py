"""A tiny PySpark job with the real job's contract, for the local backend's mechanics tests.

Reads the manifest on the driver, then each of two partitions writes its part and metrics part
with boto3 from the executor: S3 works only if the endpoint and credentials reached both the
driver (spark-submit's environment) and the executors (the worker's environment).
"""

import argparse
import json

import boto3
from pyspark import SparkContext


def split(uri):
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def write_partition(output, keys, partition, first, end):
    s3 = boto3.client("s3")
    bucket, prefix = split(output)
    rows = "".join(json.dumps({"key": k, "top_k": [], "error": None}) + "\n" for k in keys)
    s3.put_object(Bucket=bucket, Key=f"{prefix}part-{partition:05d}.jsonl", Body=rows)
    metrics = {
        "partition": partition,
        "rows": len(keys),
        "predicted": len(keys),
        "errors": 0,
        "errors_by_type": {},
        "first_index": first,
        "end_index": end,
        "wall_seconds": 0.1,
    }
    s3.put_object(
        Bucket=bucket, Key=f"{prefix}_metrics/part-{partition:05d}.json", Body=json.dumps(metrics)
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--output", required=True)
    args, _ = parser.parse_known_args()
    s3 = boto3.client("s3")
    manifest = json.loads(
        s3.get_object(Bucket=split(args.manifest)[0], Key=split(args.manifest)[1])["Body"].read()
    )
    keys = []
    for shard in manifest["shards"]:
        bucket, key = split(shard["uri"])
        keys += s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    total = len(keys)
    ranges = [(p, p * total // 2, (p + 1) * total // 2) for p in range(2)]
    sc = SparkContext()
    output = args.output
    sc.parallelize(ranges, 2).foreach(lambda r: write_partition(output, keys[r[1] : r[2]], *r))
    sc.stop()


if __name__ == "__main__":
    main()
