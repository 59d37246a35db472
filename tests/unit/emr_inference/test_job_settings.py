"""One definition of every job setting (batch_inference.contract.settings): the pipeline config,
the step's arguments and the job's command line agree with it, and a change on one side fails."""

from __future__ import annotations

import dataclasses

import pytest
from batch_inference.cli import build_parser, job_config, parse_config
from batch_inference.config import JobConfig, ModelSpec
from batch_inference.contract import settings as contract
from batch_inference.contract.settings import CONFIG, SETTING, SETTINGS
from emr_inference import config as pipeline_config
from emr_inference.config import ModelConfig, RequestDefaults, job_setting_mismatches
from emr_inference.job_command import job_arguments
from emr_inference.resolved import ResolvedRequest
from pydantic import Field

from tests.unit.emr_inference.pipeline_fixtures import date_request, resolved_request

MANIFEST = "s3://out-bucket/_staging/unit/run/manifest/manifest.json"


def test_the_pipeline_config_agrees_with_the_job_settings():
    assert job_setting_mismatches() == []


def test_a_default_changed_in_the_pipeline_config_is_caught():
    class Changed(RequestDefaults):
        batch_size: int = Field(default=32, description=SETTING["batch_size"].help)

    assert job_setting_mismatches(Changed) == ["batch_size: default 32, the job's is 64"]


def test_a_default_changed_in_a_nested_config_model_is_caught():
    class ChangedModel(ModelConfig):
        image_size: int = Field(default=96, description=SETTING["model.image_size"].help)

    class Changed(RequestDefaults):
        model: ChangedModel

    assert job_setting_mismatches(Changed) == ["model.image_size: default 96, the job's is 224"]


def test_a_default_or_name_changed_in_the_contract_is_caught(monkeypatch):
    changed = [
        dataclasses.replace(SETTING["prefetch_threads"], default=4),
        dataclasses.replace(SETTING["top_k"], name="topk"),
        dataclasses.replace(SETTING["sse.mode"], choices=("none", "AES256")),
        dataclasses.replace(SETTING["model.input_name"], help="another text"),
    ]
    monkeypatch.setattr(pipeline_config, "SETTINGS", changed)
    assert job_setting_mismatches() == [
        "prefetch_threads: default 16, the job's is 4",
        "topk: not a field of RequestDefaults",
        "sse.mode: choices ('none', 'AES256', 'aws:kms'), the job's are ('none', 'AES256')",
        "model.input_name: description differs from the job's help",
    ]


def test_a_request_of_defaults_gives_the_jobs_defaults():
    """Every default goes through the step's arguments into the same JobConfig the job makes of
    its required arguments alone: the Airflow side and the job agree on every default."""
    request = resolved_request()
    from_request = parse_config(job_arguments(request, MANIFEST))
    model = request.model
    assert from_request == JobConfig(
        manifest_uri=MANIFEST,
        output_uri=request.job_output_uri.uri,
        run_id=request.run_id,
        model=ModelSpec(model.name, model.symbol, model.params, model.labels),
    )
    assert from_request.prefetch_threads == 16  # what docs/BENCHMARKS.md measured


def test_every_config_setting_is_a_request_field_the_step_passes():
    """Each section's settings where they apply: int8 with int8, conversion with a runtime
    other than MXNet."""
    common = {
        "sse": {"mode": "aws:kms", "kms_key_id": "alias/k"},
        "max_partition_keys": 20_000,  # unset by default: derived by the job
    }
    digests = {"symbol_sha256": "1" * 64, "params_sha256": "2" * 64, "labels_sha256": "3" * 64}
    int8 = date_request(
        precision="int8",
        model=digests,
        int8={"calibration_uri": "s3://calib/x/", "on_disagreement": "fp32"},
        **common,
    )
    converted = date_request(model={**digests, "runtime": "onnxruntime"}, **common)
    onnx_file = {"onnx": "s3://models/model.onnx", "onnx_sha256": "4" * 64, "runtime": "openvino"}
    given = date_request(model={"symbol": None, "params": None, **onnx_file}, **common)
    both = date_request(precision="int8", model={**digests, "runtime": "onnxruntime"}, **common)
    assert {"--int8-cache", "--conversion-cache"} <= set(
        job_arguments(ResolvedRequest.of(both), MANIFEST)
    )
    passed = set()
    for request in (int8, converted, given):
        arguments = job_arguments(ResolvedRequest.of(request), MANIFEST)
        passed |= {arg for arg in arguments if arg.startswith("--")}
    assert passed == {setting.flag for setting in SETTINGS if setting.source != contract.JOB}
    assert "--conversion-cache" not in job_arguments(ResolvedRequest.of(int8), MANIFEST)
    assert "--int8-cache" not in job_arguments(ResolvedRequest.of(converted), MANIFEST)


def test_the_jobs_help_shows_every_settings_flag_help_and_default():
    text = " ".join(build_parser().format_help().split())
    for setting in SETTINGS:
        assert setting.flag in text
        assert " ".join(setting.help.split()) in text
    assert "--prefetch-threads PREFETCH_THREADS Download/decode threads" in text
    assert "per Python worker) (default: 16)" in text
    assert "--std STD R,G,B standard deviations divided by after the mean (default: " in text
    assert "--sse {none,AES256,aws:kms} ServerSideEncryption" in text
    assert "--require NAME==VERSION A package version" in text
    titles = ["input and output:", "model:", "preprocessing:", "execution:", "int8 ("]
    assert sorted(titles, key=text.index) == titles  # the groups, in the table's order


def test_every_required_setting_is_required_by_the_job(capsys):
    required = [setting for setting in SETTINGS if setting.required]
    assert [setting.flag for setting in required] == [
        "--manifest", "--output", "--run-id", "--model-name", "--model-labels",
    ]  # fmt: skip
    with pytest.raises(SystemExit):
        parse_config(["--manifest", "s3://b/m.json"])
    assert "required: --output, --run-id, --model-name, --model-labels" in capsys.readouterr().err


REQUIRED = ["--manifest", "s3://b/m.json", "--output", "s3://b/o/", "--run-id", "r"]
LABELS = ["--model-name", "m", "--model-labels", "s3://b/l.txt"]
MXNET = ["--model-symbol", "s3://b/s.json", "--model-params", "s3://b/p.params"]
ONNX = ["--runtime", "onnxruntime", "--model-onnx", "s3://b/m.onnx"]


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ([], "the model needs --model-symbol and --model-params, or --model-onnx"),
        (MXNET[:2], "the model needs --model-symbol and --model-params, or --model-onnx"),
        (ONNX[2:], "--model-onnx needs --runtime onnxruntime or openvino"),
        (ONNX + MXNET[:2], "--model-onnx names the model: leave out --model-symbol"),
        (ONNX + MXNET[2:], "--model-onnx names the model: leave out --model-symbol"),
    ],
    ids=["none", "symbol only", "onnx on mxnet", "onnx and symbol", "onnx and params"],
)
def test_the_job_needs_one_model_mxnet_files_or_an_onnx_file(model, error, capsys):
    with pytest.raises(SystemExit):
        parse_config(REQUIRED + LABELS + model)
    assert error in capsys.readouterr().err


def test_an_onnx_file_needs_no_conversion_cache_and_an_mxnet_model_on_onnxruntime_does():
    config = parse_config(REQUIRED + LABELS + ONNX)
    assert config.model.given_onnx and config.conversion is None
    assert (config.model.symbol_uri, config.model.onnx_uri) == (None, "s3://b/m.onnx")
    converted = ["--runtime", "onnxruntime"] + MXNET
    with pytest.raises(ValueError, match="runtime onnxruntime needs --conversion-cache"):
        job_config(vars(build_parser().parse_args(REQUIRED + LABELS + converted)))
    assert parse_config(REQUIRED + LABELS + MXNET).model.given_onnx is False


def test_setting_arguments_leave_out_unset_values_and_off_flags():
    assert SETTING["model.symbol_sha256"].arguments(None) == []
    assert SETTING["sse.kms_key_id"].arguments("") == []
    assert SETTING["model.scale"].arguments(0.5) == ["--scale", "0.5"]
    assert SETTING["model.mean"].arguments([1, 2, 3]) == ["--mean", "1.0,2.0,3.0"]
    assert SETTING["int8.on_disagreement"].arguments("fail") == []
    assert SETTING["int8.on_disagreement"].arguments("fp32") == ["--int8-fallback"]
    assert SETTING["resume"].arguments(True) == []
    assert SETTING["resume"].arguments(False) == ["--no-resume"]
    assert SETTING["requirements"].arguments(["a==1", "b==2"]) == [
        "--require", "a==1", "--require", "b==2",
    ]  # fmt: skip


def test_a_request_without_a_setting_reads_its_default():
    """A run resolved by an earlier version (in flight across a deploy) may lack a newer key."""
    assert SETTING["partition_seconds"].read({}) == 300
    assert SETTING["max_partition_keys"].read({}) is None  # derived by the job
    assert SETTING["estimate.images_per_task_second"].read({"estimate": {}}) == 25.0
    assert SETTING["model.input_name"].read({"model": {}}) == "data"
    assert SETTING["model.onnx"].read({"model": {}}) is None  # a run resolved before it existed
    with pytest.raises(KeyError, match="model.labels"):
        SETTING["model.labels"].read({"model": {}})


def test_config_settings_are_the_ones_the_pipeline_config_holds():
    names = {setting.name for setting in SETTINGS if setting.source == CONFIG}
    assert {"batch_size", "model.symbol", "sse.mode", "int8.on_disagreement"} <= names
    assert not names & {"manifest", "output", "run_id", "int8.cache", "requirements", "resume"}


def test_the_jobs_partition_rate_is_the_plans_estimate():
    """``estimate.images_per_task_second`` is one number: the run plan's rate and the one the job
    derives its partition size from, passed as ``--images-per-task-second``."""
    request = resolved_request(estimate={"images_per_task_second": 90.0}, partition_seconds=120)
    args = job_arguments(request, MANIFEST)
    assert args[args.index("--images-per-task-second") + 1] == "90.0"
    assert args[args.index("--partition-seconds") + 1] == "120"
    assert "--max-partition-keys" not in args  # unset: the job derives it
    config = parse_config(args)
    assert (config.images_per_task_second, config.partition_seconds) == (90.0, 120)
    assert config.partition_keys()[0] == 90 * 120
    request = request.model_copy(update={"max_partition_keys": 4_000})
    assert parse_config(job_arguments(request, MANIFEST)).partition_keys() == (
        4_000, "--max-partition-keys",
    )  # fmt: skip
