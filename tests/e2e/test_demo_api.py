"""The real ``demo`` DAG driven through Airflow's REST API, end to end.

One Airflow stack (PostgreSQL, api-server, scheduler, dag-processor, triggerer; see
airflow_stack.py) parses the repository's ``dags/``;
``emr_inference_tools.demo.run_demo.seed_demo`` stages the
demo digits model and images in the session's moto S3 server where ``demo.yaml`` expects them.
Every run is the whole pipeline on the local backend: a real Spark standalone cluster started and
stopped by the DAG, a real spark-submit, a real MXNet model, output published to S3.

* a manual trigger (through the official ``apache-airflow-client``) with conf overrides;
* triggers with invalid conf rejected with HTTP 400 naming the field, creating no run;
* a person's trigger: headless Chromium (selenium, the distribution's ``chromium`` and
  ``chromium-driver``) logs in to the UI, opens the DAG's trigger form, finds the Params in their
  sections (``emr_inference.params.FORM``) under their titles, fills in only the date and
  triggers; the run must succeed and publish that date.

Backfills of this DAG through the REST API and the CLI are tests/e2e/test_runbook.py's (the
README's and OPERATIONS.md's commands as written: each date published to its own partition, no
more clusters at once than the pipeline allows).

After the module no Spark process started by this stack may be left.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator

import psutil
import pytest

from emr_inference_tools.demo.run_demo import DAG_ID, PREDICTIONS_BUCKET, seed_demo
from emr_inference_tools.local_s3 import LocalS3
from tests.e2e.airflow_stack import TERMINAL_RUN_STATES, AirflowApiError, AirflowStack

pytestmark = pytest.mark.slow

IMAGES = 20  # per partition, one of them a corrupt input; seed_demo adds two photos
TRIGGERED_PARTITION = "2026-04-10"
#: the browser test's date: no images, so its run plans, skips the cluster and succeeds in seconds
#: (the REST test above is the one that runs Spark)
FORM_PARTITION = "2026-04-11"
SMALL_CLUSTER_CONF = {"partitions": 2}  # demo.yaml says 4; two cores here
RUN_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def demo_inputs(
    s3_server: LocalS3, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """Seed the demo model and images; ``{partition date: sorted URIs of its images}``."""
    dates = [TRIGGERED_PARTITION]
    model_dir = tmp_path_factory.mktemp("demo-model")
    uploaded = seed_demo(s3_server, dates, IMAGES, bad_fraction=0.05, model_dir=model_dir)
    return {date: sorted(uri for uri in uploaded if f"/dt={date}/" in uri) for date in dates}


def _spark_processes(airflow_home: str) -> list[str]:
    """Command lines of Spark daemons (``org.apache.spark.deploy``) started under this stack:
    their environment carries its AIRFLOW_HOME (other stacks on this machine are not ours)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if "org.apache.spark.deploy" not in command:
            continue
        try:
            if process.environ().get("AIRFLOW_HOME") == airflow_home:
                found.append(command)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module", autouse=True)
def no_spark_left_behind(stack: AirflowStack):
    """After every test of the module, the DAG's teardown must have stopped every Spark process."""
    yield
    assert _spark_processes(stack.env["AIRFLOW_HOME"]) == []


def _published(s3: LocalS3, partition: str) -> tuple[set[str], list[dict], dict]:
    """The published output of ``partition``: object names, rows of every part, run summary."""
    client, prefix = s3.client(), f"predictions/dt={partition}/"
    listing = client.get_paginator("list_objects_v2").paginate(
        Bucket=PREDICTIONS_BUCKET, Prefix=prefix
    )
    names = {item["Key"][len(prefix) :] for page in listing for item in page.get("Contents", [])}

    def read(name: str) -> str:
        body = client.get_object(Bucket=PREDICTIONS_BUCKET, Key=prefix + name)["Body"].read()
        return body.decode("utf-8")

    rows = [
        json.loads(line)
        for name in sorted(names)
        if name.endswith(".jsonl")
        for line in read(name).splitlines()
    ]
    summary = json.loads(read("_run_summary.json")) if "_run_summary.json" in names else {}
    return names, rows, summary


def _assert_published(s3: LocalS3, partition: str, images: list[str], run_id: str) -> list[dict]:
    """``partition``'s output is complete: one row per image, _SUCCESS, this run's summary."""
    names, rows, summary = _published(s3, partition)
    assert {"_SUCCESS", "_run_summary.json"} <= names, sorted(names)
    assert sorted(row["key"] for row in rows) == images
    assert {row["run_id"] for row in rows} == {run_id}
    assert summary["run_id"] == run_id
    assert summary["rows"] == len(images)
    assert summary["partitions"] == SMALL_CLUSTER_CONF["partitions"]
    return rows


def test_triggered_run_publishes_every_image_with_the_conf_overrides(
    stack: AirflowStack, demo_inputs: dict[str, list[str]], s3_server: LocalS3
):
    from airflow_client import client
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

    stack.unpause(DAG_ID)
    conf = {"partition_date": TRIGGERED_PARTITION, "top_k": 2, "batch_size": 8}
    configuration = client.Configuration(host=stack.base_url, access_token=stack.token)
    with client.ApiClient(configuration) as api_client:
        runs = DagRunApi(api_client)
        run = runs.trigger_dag_run(
            DAG_ID, TriggerDAGRunPostBody(logical_date=None, conf={**conf, **SMALL_CLUSTER_CONF})
        )
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while (state := runs.get_dag_run(DAG_ID, run.dag_run_id).state.value) not in (
            TERMINAL_RUN_STATES
        ):
            assert time.monotonic() < deadline, stack.task_states(DAG_ID, run.dag_run_id)
            time.sleep(2)

    assert state == "success", stack.task_states(DAG_ID, run.dag_run_id)
    request = stack.xcom(DAG_ID, run.dag_run_id, "validate_request")
    assert {key: request[key] for key in conf} == conf
    images = demo_inputs[TRIGGERED_PARTITION]
    rows = _assert_published(s3_server, TRIGGERED_PARTITION, images, run.dag_run_id)
    predicted = [row for row in rows if not row["error"]]
    assert [row["key"] for row in rows if row["error"]] == [uri for uri in images if "/bad-" in uri]
    assert predicted and {len(row["top_k"]) for row in predicted} == {2}  # demo.yaml says 3
    assert stack.xcom(DAG_ID, run.dag_run_id, "date.publish_results", map_index=0) == {
        "partition_date": TRIGGERED_PARTITION,
        "output_uri": f"s3://{PREDICTIONS_BUCKET}/predictions/dt={TRIGGERED_PARTITION}/",
        "rows": len(images),
        "errors": len(rows) - len(predicted),
        "summary_uri": (
            f"s3://{PREDICTIONS_BUCKET}/predictions/dt={TRIGGERED_PARTITION}/_run_summary.json"
        ),
    }


@pytest.mark.parametrize(
    ("conf", "field"),
    [({"batch_size": 0}, "batch_size"), ({"input_uri": "http://x"}, "input_uri")],
)
def test_invalid_conf_is_rejected_with_400_naming_the_field(
    stack: AirflowStack, conf: dict, field: str
):
    runs_before = stack.api("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"]

    with pytest.raises(AirflowApiError) as rejected:
        stack.trigger(DAG_ID, conf={"partition_date": TRIGGERED_PARTITION, **conf})

    assert rejected.value.status == 400
    assert f"Invalid input for param {field}:" in str(rejected.value.detail)
    assert stack.api("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"] == runs_before


# -- the trigger form, in a browser ----------------------------------------------------------

#: The trigger form's sections in order: Airflow's own open one (the Params with no section),
#: ours (folded), then Airflow's JSON editor of the whole conf.
FORM_SECTIONS = [
    "Run Parameters",
    "Input and output",
    "Model",
    "Cluster",
    "Tuning (advanced)",
    "Advanced Options",
]
BROWSER_WAIT_SECONDS = 30


@pytest.fixture
def browser(tmp_path) -> Iterator:
    """Headless Chromium through chromedriver (both from the distribution's packages); the last
    page's screenshot and HTML are left in the test's tmp_path."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    if shutil.which("chromium") is None or driver_path is None:
        pytest.fail(
            "no chromium/chromedriver: apt-get install -y chromium chromium-driver", pytrace=False
        )
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=en-US"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1600")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "last-page.png"))
        (tmp_path / "last-page.html").write_text(driver.page_source)
        driver.quit()


def _click(driver, element) -> None:
    """Click ``element`` as a person would: scrolled into view, and again while something else
    still covers it (a folding section's editor slides over the next trigger for a moment)."""
    from selenium.common.exceptions import ElementClickInterceptedException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    retry = WebDriverWait(
        driver, BROWSER_WAIT_SECONDS, ignored_exceptions=(ElementClickInterceptedException,)
    )
    retry.until(lambda _: element.click() or True)


def _section_items(driver) -> list:
    """The accordion items of the trigger form's config form (one per section)."""
    from selenium.webdriver.common.by import By

    form = driver.find_element(By.CSS_SELECTOR, "[data-testid=config-form]")
    return form.find_elements(By.CSS_SELECTOR, ":scope > [data-part=item]")


def _labels(item) -> list[str]:
    """The field labels shown in an open section (a required field's label ends in ' *')."""
    from selenium.webdriver.common.by import By

    return [
        label.text.removesuffix("*").strip()
        for label in item.find_elements(By.CSS_SELECTOR, "[data-part=item-content] label")
        if label.is_displayed() and label.text.strip()
    ]


def test_a_person_triggers_a_run_from_the_form_filling_in_only_the_date(
    stack: AirflowStack,
    demo_inputs: dict[str, list[str]],
    browser,
    tmp_path,
):
    from emr_inference.params import FORM
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    stack.unpause(DAG_ID)
    runs_before = {
        run["dag_run_id"] for run in stack.api("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"]
    }
    wait = WebDriverWait(browser, BROWSER_WAIT_SECONDS)
    started = time.monotonic()

    # log in as the stack's user (the simple auth manager's own login page)
    browser.get(f"{stack.base_url}/auth/login")
    wait.until(ready.visibility_of_element_located((By.NAME, "username"))).send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(stack.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda driver: "/auth/login" not in driver.current_url)

    # the DAG's trigger form: the sections in order, the open one's titles, then each folded one's
    browser.get(f"{stack.base_url}/dags/{DAG_ID}")
    wait.until(
        ready.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=trigger-dag-button]"))
    ).click()
    wait.until(ready.visibility_of_element_located((By.ID, "element_partition_date")))
    items = _section_items(browser)
    triggers = [item.find_element(By.CSS_SELECTOR, "[data-part=item-trigger]") for item in items]
    assert [trigger.text.strip() for trigger in triggers] == FORM_SECTIONS
    assert [item.get_attribute("data-state") for item in items] == ["open"] + ["closed"] * 5
    expected = [[form.title for form in fields.values()] for fields in FORM.values()]
    assert expected[0][:3] == ["Date", "Several dates", "Date range"]
    assert expected[2][-2:] == ["Batch size", "Predictions per image"]
    assert _labels(items[0]) == expected[0]
    for index in range(1, len(FORM)):
        _click(browser, triggers[index])  # opens it, folds the one open
        wait.until(lambda _, item=items[index]: item.get_attribute("data-state") == "open")
        wait.until(lambda _, item=items[index], want=expected[index]: _labels(item) == want)
    _click(browser, triggers[0])

    # fill in only the date, and trigger
    date = wait.until(ready.visibility_of_element_located((By.ID, "element_partition_date")))
    month_day_year = f"{FORM_PARTITION[5:7]}{FORM_PARTITION[8:10]}{FORM_PARTITION[:4]}"
    date.send_keys(month_day_year)  # an en-US date input: mm/dd/yyyy
    assert date.get_attribute("value") == FORM_PARTITION
    browser.save_screenshot(str(tmp_path / "trigger-form.png"))
    browser.find_element(By.CSS_SELECTOR, "[data-testid=trigger-dag-submit]").click()

    def new_runs(_) -> list[dict]:
        runs = stack.api("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"]
        return [run for run in runs if run["dag_run_id"] not in runs_before]

    (run,) = WebDriverWait(browser, BROWSER_WAIT_SECONDS).until(new_runs)
    print(f"browser: login, form and trigger in {time.monotonic() - started:.1f}s")
    assert run["run_type"] == "manual"
    assert run["conf"]["partition_date"] == FORM_PARTITION
    finished = stack.wait_for_run(DAG_ID, run["dag_run_id"], timeout=RUN_TIMEOUT_SECONDS)
    assert finished["state"] == "success", stack.task_states(DAG_ID, run["dag_run_id"])
    states = stack.task_states(DAG_ID, run["dag_run_id"])
    # the form's values passed validate_request; the date had no images: no cluster, nothing made
    assert states["validate_request"] == states["plan_run"] == "success", states
    assert states["create_cluster"] == "skipped", states
    assert FORM_PARTITION not in demo_inputs
