"""The deferrable sensor's trigger runs its async waiter with the pinned packages.

The default ``deferrable: true`` sensor hands the wait to the triggerer, where the Amazon provider
polls the step with ``aiobotocore``; without it every EMR run failed seconds after deferring
(``Trigger failure``: ``No module named 'aiobotocore'``). Here the trigger polls a step through
the real async client against moto's server (its EMR API over HTTP).
"""

from __future__ import annotations

import asyncio

import boto3
from emr_inference.emr.operators import EmrInferenceStepTrigger


def test_the_trigger_polls_a_step_through_aiobotocore(aws_conn, s3_env):
    emr = boto3.client("emr", endpoint_url=s3_env.endpoint_url, region_name="us-east-1")
    cluster = emr.run_job_flow(
        Name="trigger-test",
        ReleaseLabel="emr-7.2.0",
        Instances={
            "InstanceGroups": [
                {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    step = {"Name": "s", "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}  # fmt: skip
    (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster, Steps=[step])["StepIds"]
    assert emr.describe_step(ClusterId=cluster, StepId=step_id)["Step"]["Status"]["State"] in (
        "PENDING",
        "RUNNING",
    )
    trigger = EmrInferenceStepTrigger(
        job_flow_id=cluster,
        step_id=step_id,
        waiter_delay=1,
        waiter_max_attempts=2,
        aws_conn_id=aws_conn,
    )

    async def first_event():
        async for event in trigger.run():
            return event

    event = asyncio.run(first_event())
    # the step never ends on moto: the async waiter polled it twice, then gave up, as it should
    assert event.payload == {
        "status": "error",
        "message": "Waiter error: max attempts reached",
        "value": None,
    }
