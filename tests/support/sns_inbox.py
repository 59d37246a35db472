"""An SNS topic with an SQS queue subscribed, on moto's server: what a subscriber of a
pipeline's alerts topic gets, read back by the tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class SnsInbox:
    """The topic's ARN and the queue its messages are delivered to."""

    arn: str
    sqs: Any
    queue_url: str

    def read(self, wait_seconds: int = 1) -> list[tuple[str | None, str]]:
        """The messages delivered since the last read, as ``(subject, message)``."""
        got = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        )
        messages = got.get("Messages", [])
        for message in messages:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        bodies = [json.loads(message["Body"]) for message in messages]
        return [(body.get("Subject"), body["Message"]) for body in bodies]


@contextmanager
def sns_inbox(endpoint_url: str, name: str | None = None) -> Iterator[SnsInbox]:
    """A fresh topic (``name``, default a unique one) and its subscribed queue; both deleted."""
    import boto3

    name = name or f"alerts-{uuid.uuid4().hex[:8]}"
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    sns = session.client("sns", endpoint_url=endpoint_url)
    sqs = session.client("sqs", endpoint_url=endpoint_url)
    arn = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    try:
        yield SnsInbox(arn, sqs, queue)
    finally:
        sns.delete_topic(TopicArn=arn)
        sqs.delete_queue(QueueUrl=queue)
