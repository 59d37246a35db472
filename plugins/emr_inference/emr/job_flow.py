"""The RunJobFlow request for one inference run (a pure function of the resolved request).

The cluster runs its release's applications (Spark, and EMR's MXNet on emr-7.2.0), installs the
job's Python dependencies with a bootstrap action (the script ``stage_job_artifacts`` staged),
stays alive between steps (``KeepJobFlowAliveWhenNoSteps``) so the DAG's teardown task decides
when it ends, and carries an ``AutoTerminationPolicy`` idle timeout as a second guard against
leaked clusters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from emr_inference.emr.releases import release_version, supported_release
from emr_inference.emr.sizing import omp_threads, spark_properties

if TYPE_CHECKING:
    from emr_inference.config import ClusterConfig, NodeGroupConfig, RequestDefaults
    from emr_inference.resolved import ResolvedRequest

#: Tags that identify the run a cluster belongs to (used to find it again on retry).
RUN_TAG_KEYS = ("dag_id", "run_id", "pipeline")
SPOT_TIMEOUT_MINUTES = 10


def run_tags(request: ResolvedRequest) -> dict[str, str]:
    """The tags that identify the DAG run a cluster belongs to."""
    return {key: getattr(request, key) for key in RUN_TAG_KEYS}


def cluster_name(dag_id: str, run_id: str) -> str:
    """The cluster's name: the DAG (the pipeline) and the run id."""
    return f"{dag_id} {run_id}"[:256]


def _ebs(node: NodeGroupConfig) -> dict[str, Any]:
    if not node.ebs_volume_gb:
        return {}
    volume = {"VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": node.ebs_volume_gb}}
    return {"EbsConfiguration": {"EbsBlockDeviceConfigs": [{**volume, "VolumesPerInstance": 1}]}}


def _node_groups(cluster: ClusterConfig) -> list[tuple[str, NodeGroupConfig]]:
    """``(EMR role, node group)`` for master, core and, when configured, task nodes."""
    groups = [("MASTER", cluster.master), ("CORE", cluster.core)]
    if cluster.task:
        groups.append(("TASK", cluster.task))
    return groups


def _instance_groups(cluster: ClusterConfig) -> list[dict[str, Any]]:
    return [
        {
            "Name": role.lower(),
            "InstanceRole": role,
            "Market": node.market,
            "InstanceType": node.instance_types[0],
            "InstanceCount": node.count,
            **_ebs(node),
        }
        for role, node in _node_groups(cluster)
    ]


def _instance_fleets(cluster: ClusterConfig) -> list[dict[str, Any]]:
    fleets = []
    for role, node in _node_groups(cluster):
        spot = node.market == "SPOT"
        fleet: dict[str, Any] = {
            "Name": role.lower(),
            "InstanceFleetType": role,
            "TargetOnDemandCapacity": 0 if spot else node.count,
            "TargetSpotCapacity": node.count if spot else 0,
            "InstanceTypeConfigs": [
                {"InstanceType": instance_type, "WeightedCapacity": 1, **_ebs(node)}
                for instance_type in node.instance_types
            ],
        }
        if spot:
            fleet["LaunchSpecifications"] = {
                "SpotSpecification": {
                    "TimeoutDurationMinutes": SPOT_TIMEOUT_MINUTES,
                    "TimeoutAction": "SWITCH_TO_ON_DEMAND",
                    "AllocationStrategy": "capacity-optimized",
                }
            }
        fleets.append(fleet)
    return fleets


def _instances(cluster: ClusterConfig) -> dict[str, Any]:
    instances: dict[str, Any] = {
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    subnets = cluster.subnet_ids
    if cluster.instance_collection == "fleets":
        instances["InstanceFleets"] = _instance_fleets(cluster)
        if subnets:
            instances["Ec2SubnetIds"] = list(subnets)
    else:
        instances["InstanceGroups"] = _instance_groups(cluster)
        if subnets:
            instances["Ec2SubnetId"] = subnets[0]
    if cluster.ec2_key_name:
        instances["Ec2KeyName"] = cluster.ec2_key_name
    return instances


def spark_env(request: RequestDefaults) -> dict[str, str]:
    """The ``spark-env`` exports: the job's interpreter on every node, and MXNet's threads."""
    cluster = request.cluster
    return {
        "PYSPARK_PYTHON": cluster.python,
        "PYSPARK_DRIVER_PYTHON": cluster.python,
        "OMP_NUM_THREADS": str(omp_threads(request)),
    }


#: EMR 7.2 added YARN node labels by market: application masters can be kept off Spot nodes.
AM_LABEL_AWARE_RELEASE = (7, 2, 0)


def application_master_on_demand(cluster: ClusterConfig) -> dict[str, str] | None:
    """``yarn-site`` properties that keep the YARN application master on on-demand nodes, when
    Spot task nodes sit beside on-demand core nodes on a release that supports it (EMR 6+
    otherwise places it on any node, and a reclaimed Spot node takes the whole application)."""
    task = cluster.task
    release = release_version(cluster.release_label)
    if (
        task
        and task.market == "SPOT"
        and cluster.core.market == "ON_DEMAND"
        and release >= AM_LABEL_AWARE_RELEASE
    ):
        return {
            "yarn.node-labels.enabled": "true",
            "yarn.node-labels.am.default-node-label-expression": "ON_DEMAND",
        }
    return None


def _configurations(request: RequestDefaults) -> list[dict[str, Any]]:
    yarn_site = application_master_on_demand(request.cluster)
    return [
        *([{"Classification": "yarn-site", "Properties": yarn_site}] if yarn_site else []),
        {"Classification": "spark-defaults", "Properties": spark_properties(request)},
        {
            "Classification": "spark-env",
            "Properties": {},
            "Configurations": [{"Classification": "export", "Properties": spark_env(request)}],
        },
    ]


def bootstrap_arguments(cluster: ClusterConfig, artifacts: Mapping[str, str]) -> list[str]:
    """The bootstrap script's arguments: the job's interpreter (a virtualenv made from the nodes'
    system Python), the staged hashed requirements, the staged wheelhouse when there is one, then
    the cluster's extra ``pip install`` arguments."""
    base_python = cluster.base_python or supported_release(cluster.release_label).base_python
    args = [
        "--python", cluster.python,
        "--base-python", base_python,
        "--requirements", artifacts["bootstrap_requirements"],
    ]  # fmt: skip
    if artifacts.get("wheelhouse"):
        args += ["--wheelhouse", artifacts["wheelhouse"]]
    return [*args, *cluster.bootstrap_args]


def build_job_flow(request: ResolvedRequest, artifacts: Mapping[str, str]) -> dict[str, Any]:
    """RunJobFlow arguments (``job_flow_overrides``) for this run's cluster.

    :param request: the resolved request (its ``cluster`` section shapes the cluster).
    :param artifacts: ``stage_job_artifacts``'s XCom: ``bootstrap`` is the staged script, run with
        :func:`bootstrap_arguments`.
    """
    cluster = request.cluster
    tags = {**cluster.tags, **run_tags(request)}
    job_flow: dict[str, Any] = {
        "Name": cluster_name(request.dag_id, request.run_id),
        "ReleaseLabel": cluster.release_label,
        "Applications": [
            {"Name": name} for name in supported_release(cluster.release_label).applications
        ],
        "BootstrapActions": [
            {
                "Name": "install-job-dependencies",
                "ScriptBootstrapAction": {
                    "Path": artifacts["bootstrap"],
                    "Args": bootstrap_arguments(cluster, artifacts),
                },
            }
        ],
        "Configurations": _configurations(request),
        "Instances": _instances(cluster),
        "AutoTerminationPolicy": {"IdleTimeout": cluster.idle_timeout_seconds},
        "JobFlowRole": cluster.job_flow_role,
        "ServiceRole": cluster.service_role,
        "VisibleToAllUsers": True,
        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    }
    if cluster.log_uri:
        job_flow["LogUri"] = cluster.log_uri
    if cluster.security_configuration:
        job_flow["SecurityConfiguration"] = cluster.security_configuration
    return job_flow
