"""The pipeline YAML model: defaults, and errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from emr_inference.config import ConfigError, load_pipeline, parse_pipeline

from tests.unit.emr_inference.pipeline_fixtures import MINIMAL, ONNX_MODEL, pipeline, pipeline_data

PIPELINES = Path(__file__).resolve().parents[3] / "include" / "pipelines"


def test_defaults_follow_the_design():
    config = pipeline()
    assert config.schedule == "@daily"
    assert config.catchup is False
    assert config.cluster.release_label == "emr-7.2.0"
    assert config.batch_size == 64
    assert config.top_k == 5
    assert config.sse.mode == "none"
    assert config.aws_conn_id == "aws_default"


@pytest.mark.parametrize("name", ["demo", "cifar10_resnet18", "cifar10_resnet18_onnx"])
def test_shipped_pipelines_load(name):
    config = load_pipeline(PIPELINES / f"{name}.yaml")
    assert config.pipeline == name


def test_cifar10_pipeline_is_the_blog_workload():
    config = load_pipeline(PIPELINES / "cifar10_resnet18.yaml")
    assert config.backend == "emr"
    assert config.batch_size == 64
    assert config.cluster.core.count == 4
    assert config.cluster.core.instance_types[0].startswith("c5.")
    assert config.cluster.master.instance_types == ["m5.xlarge"]


def test_demo_pipeline_is_local_and_small():
    config = load_pipeline(PIPELINES / "demo.yaml")
    assert config.backend == "local"
    assert config.input_uri == "s3://demo-images/images/dt={{ partition_date }}/"
    assert config.model.image_size == 32


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
        ({"backend": "k8s"}, "backend", "unknown backend 'k8s' (known: emr, local)"),
        ({"output_uri": "https://x/y"}, "output_uri", "pattern"),
        ({"input_uri": None}, "<root>", "one of input_uri or manifest_uri"),
        ({"bogus": 1}, "bogus", "Extra inputs"),
        ({"engine": "pandas"}, "engine", "'rdd' or 'predict_batch_udf'"),
        ({"max_partition_keys": 50}, "max_partition_keys", "greater than or equal to 100"),
        ({"max_partition_keys": 0}, "max_partition_keys", "greater than or equal to 100"),
        ({"partition_seconds": 5}, "partition_seconds", "greater than or equal to 30"),
        ({"partition_seconds": 86400}, "partition_seconds", "less than or equal to 3600"),
        ({"estimate": {"images_per_task_second": 0}}, "estimate.images_per_task_second", "greater"),
        ({"engine": "predict_batch_udf"}, "engine", "needs pandas and pyarrow on the nodes"),
        # MXNet only where EMR ships it; a release the package does not describe is refused
        (
            {"cluster": {"release_label": "emr-7.13.0"}},
            "model.runtime",
            "emr-7.13.0's nodes run onnxruntime, openvino, not mxnet (releases that run mxnet: "
            "emr-7.2.0)",
        ),
        (
            {"model": {**MINIMAL["model"], "runtime": "onnxruntime"}},
            "model.runtime",
            "emr-7.2.0's nodes run mxnet, not onnxruntime (releases that run onnxruntime: "
            "emr-7.13.0)",
        ),
        (
            {"model": {**MINIMAL["model"], "runtime": "openvino"}},
            "model.runtime",
            "emr-7.2.0's nodes run mxnet, not openvino (releases that run openvino: emr-7.13.0)",
        ),
        (
            {"cluster": {"release_label": "emr-7.3.0"}},
            "cluster.release_label",
            "no node description for 'emr-7.3.0' (supported: emr-7.2.0, emr-7.13.0;",
        ),
        ({"conversion": {"min_agreement": 1.5}}, "conversion.min_agreement", "less than or equal"),
        # one model: MXNet files or an ONNX file, the ONNX file on a converted runtime
        (
            {"model": {**MINIMAL["model"], "symbol": None}},
            "model",
            "model.symbol and model.params: required (or model.onnx",
        ),
        (
            {"model": {**MINIMAL["model"], "onnx": "s3://models/x.onnx", "runtime": "onnxruntime"}},
            "model",
            "model.onnx names the model: leave out model.params, model.symbol",
        ),
        (
            {"model": {**ONNX_MODEL, "runtime": "mxnet"}},
            "model",
            "model.onnx: an ONNX file runs on model.runtime onnxruntime or openvino",
        ),
        (
            {"model": {**MINIMAL["model"], "onnx_sha256": "0" * 64}},
            "model",
            "model.onnx_sha256: given without model.onnx",
        ),
        ({"sse": {"mode": "AES256", "kms_key_id": "k"}}, "sse", "only valid with mode"),
        ({"alerts": {"sns_topic_arn": "inference-alerts"}}, "alerts.sns_topic_arn", "pattern"),
        ({"alerts": {"on_failure": True}}, "alerts.sns_topic_arn", "Field required"),
        (
            {
                "alerts": {
                    "sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:a",
                    "late_after_minutes": 0,
                }
            },
            "alerts.late_after_minutes",
            "greater than or equal to 1",
        ),  # fmt: skip
        (
            {"cluster": {"master": {"instance_types": ["m5.xlarge"], "count": 2}}},
            "cluster",
            "1 or 3",
        ),
        (
            {"cluster": {"core": {"instance_types": ["c5.9xlarge", "c5n.9xlarge"], "count": 4}}},
            "cluster",
            "exactly one type",
        ),
    ],
)
def test_errors_name_file_and_field(overrides, field, words):
    with pytest.raises(ConfigError) as info:
        parse_pipeline(pipeline_data(**overrides), "pipes/bad.yaml")
    message = str(info.value)
    assert f"pipes/bad.yaml: {field}" in message
    assert words in message


def test_a_pipeline_may_name_an_onnx_file_instead_of_an_mxnet_model():
    config = pipeline(model=ONNX_MODEL, cluster={"release_label": "emr-7.13.0"})
    assert (config.model.onnx, config.model.symbol, config.model.params) == (
        ONNX_MODEL["onnx"],
        None,
        None,
    )


def test_partitions_are_sized_in_time_unless_a_pipeline_bounds_their_keys():
    config = pipeline()
    assert config.max_partition_keys is None  # derived by the job: rate x seconds
    assert (config.partition_seconds, config.estimate.images_per_task_second) == (300, 25.0)
    explicit = parse_pipeline(pipeline_data(max_partition_keys=20_000), "p.yaml")
    assert explicit.max_partition_keys == 20_000
    assert (
        parse_pipeline(pipeline_data(max_partition_keys=None), "p.yaml").max_partition_keys is None
    )


def test_nested_field_error_has_dotted_path():
    data = pipeline_data()
    data["model"]["image_size"] = 4
    with pytest.raises(
        ConfigError, match=r"bad\.yaml: model\.image_size: .*greater than or equal to 8"
    ):
        parse_pipeline(data, "bad.yaml")


def test_fleets_accept_several_instance_types():
    config = pipeline(
        cluster={
            "instance_collection": "fleets",
            "core": {"instance_types": ["c5.9xlarge", "c5n.9xlarge"], "count": 4, "market": "SPOT"},
        }
    )
    assert config.cluster.core.instance_types == ["c5.9xlarge", "c5n.9xlarge"]


def test_load_pipeline_defaults_name_to_file_stem_and_reports_bad_yaml(tmp_path):
    import yaml

    data = pipeline_data()
    del data["pipeline"]
    (tmp_path / "nightly.yaml").write_text(yaml.safe_dump(data))
    assert load_pipeline(tmp_path / "nightly.yaml").pipeline == "nightly"

    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_pipeline(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: the file must contain a mapping"):
        load_pipeline(tmp_path / "list.yaml")
