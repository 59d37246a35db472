"""What a run may write and delete: its prefixes apart (both directions, every date of a range),
no bucket-root output, no model file or manifest under what it writes; and which objects under an
output prefix a publication owns."""

from __future__ import annotations

import pytest
from emr_inference.ownership import (
    OwnershipError,
    check_disjoint_prefixes,
    is_owned,
    owned_names,
)

MODEL = {
    "model.symbol": "s3://models/resnet/symbol.json",
    "model.params": "s3://models/resnet/params",
    "model.labels": "s3://models/resnet/labels.txt",
}


def date(day: str = "2026-12-06", **fields: str | None) -> dict:
    return {
        "partition_date": day,
        "output_uri": f"s3://out-b/predictions/dt={day}/",
        "input_uri": f"s3://in-b/images/dt={day}/",
        "staging_uri": f"s3://out-b/_staging/p/run/{day}/",
        "artifacts_uri": "s3://out-b/artifacts/p/",
        "manifest_uri": None,
        **fields,
    }


def test_separate_prefixes_pass_and_dates_share_input_and_artifacts() -> None:
    shared_input = {"input_uri": "s3://in-b/images/"}
    check_disjoint_prefixes([date("2026-12-05", **shared_input), date(**shared_input)], MODEL)
    check_disjoint_prefixes([date("2026-12-05"), date()], MODEL)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # the output inside another prefix of the run, and the reverse: both refused
        ({"output_uri": "s3://in-b/images/dt=2026-12-06/out/"}, "output_uri: s3://in-b/images/dt="
         "2026-12-06/out/ (2026-12-06) is inside the input_uri s3://in-b/images/dt=2026-12-06/"),
        ({"output_uri": "s3://in-b/images/"}, "output_uri: s3://in-b/images/ (2026-12-06) contains "
         "the input_uri"),
        ({"output_uri": "s3://out-b/_staging/p/run/2026-12-06/pub/"}, "is inside the staging_uri"),
        ({"output_uri": "s3://out-b/_staging/"}, "contains the staging_uri"),
        ({"output_uri": "s3://out-b/artifacts/p/x/"}, "is inside the artifacts_uri"),
        ({"output_uri": "s3://out-b/artifacts/"}, "contains the artifacts_uri"),
        ({"output_uri": "s3://in-b/images/dt=2026-12-06/"}, "is the input_uri"),
        # prefixes other than the output
        ({"input_uri": "s3://out-b/_staging/"}, "input_uri: s3://out-b/_staging/ (2026-12-06) "
         "contains the staging_uri"),
        ({"staging_uri": "s3://in-b/images/dt=2026-12-06/s/"}, "input_uri: s3://in-b/images/dt="
         "2026-12-06/ (2026-12-06) contains the staging_uri"),
        ({"artifacts_uri": "s3://out-b/_staging/p/"}, "is inside the artifacts_uri"),
    ],
)  # fmt: skip
def test_overlapping_prefixes_are_refused_in_both_directions(fields: dict, expected: str) -> None:
    with pytest.raises(OwnershipError) as raised:
        check_disjoint_prefixes([date(**fields)], MODEL)
    assert expected in str(raised.value)


def test_every_date_of_a_range_is_checked_against_every_other() -> None:
    """2026-12-06 publishes inside the input of 2026-12-05."""
    dates = [
        date("2026-12-05", input_uri="s3://in-b/images/"),
        date("2026-12-06", output_uri="s3://in-b/images/out/2026-12-06/"),
    ]
    with pytest.raises(OwnershipError) as raised:
        check_disjoint_prefixes(dates, MODEL)
    assert str(raised.value).startswith(
        "output_uri: s3://in-b/images/out/2026-12-06/ (2026-12-06) is inside the input_uri "
        "s3://in-b/images/ (2026-12-05)"
    )


def test_one_dates_output_inside_anothers_is_refused() -> None:
    dates = [
        date("2026-12-05", output_uri="s3://out-b/p/"),
        date("2026-12-06", output_uri="s3://out-b/p/2026-12-06/"),
    ]
    with pytest.raises(OwnershipError, match=r"\(2026-12-05\) contains the output_uri"):
        check_disjoint_prefixes(dates, MODEL)


def test_a_bucket_root_output_is_refused() -> None:
    with pytest.raises(
        OwnershipError, match=r"^output_uri: s3://out-b/ \(2026-12-06\) is a bucket"
    ):
        check_disjoint_prefixes([date(output_uri="s3://out-b/")], MODEL)


@pytest.mark.parametrize(
    ("fields", "objects", "expected"),
    [
        ({}, {**MODEL, "model.params": "s3://out-b/predictions/dt=2026-12-06/params"},
         "output_uri: s3://out-b/predictions/dt=2026-12-06/ (2026-12-06) holds model.params"),
        ({}, {**MODEL, "model.labels": "s3://out-b/_staging/p/run/2026-12-06/labels.txt"},
         "staging_uri: s3://out-b/_staging/p/run/2026-12-06/ (2026-12-06) holds model.labels"),
        ({"manifest_uri": "s3://out-b/predictions/dt=2026-12-06/m.json", "input_uri": None}, MODEL,
         "holds manifest_uri (2026-12-06)"),
    ],
)  # fmt: skip
def test_model_files_and_manifests_are_not_under_what_a_run_writes(
    fields: dict, objects: dict, expected: str
) -> None:
    with pytest.raises(OwnershipError) as raised:
        check_disjoint_prefixes([date(**fields)], objects)
    assert expected in str(raised.value)


def test_a_publication_owns_the_contract_names_and_what_its_summary_listed() -> None:
    listed = owned_names({"published_objects": ["extra.bin", 7]})
    assert listed == {"extra.bin"}
    for name in ("part-00000.jsonl", "_metrics/part-00012.json", "_SUCCESS", "_run_summary.json"):
        assert is_owned(name, set())
    assert is_owned("extra.bin", listed) and not is_owned("extra.bin", set())
    for name in ("notes.txt", "dt=2026-12-05/_SUCCESS", "sub/part-00000.jsonl", "part-1.jsonl"):
        assert not is_owned(name, listed)
    assert owned_names(None) == owned_names({"published_objects": "x"}) == set()
