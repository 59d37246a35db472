"""What a run may write and delete in S3, decided before any cluster.

Publishing a date replaces its earlier publication at ``output_uri``; the job writes under the
date's staging prefix; ``stage_job_artifacts`` under ``artifacts_uri``. Each of those prefixes must
be the run's own:

* :func:`check_disjoint_prefixes` (no S3 call, at request resolution): the output, input, staging
  and artifacts prefixes of every date of a run do not overlap in either direction (one inside
  the other, or the same), no output is a bucket root, and no output or staging prefix holds the
  model's files or a supplied manifest.
* :func:`owned_names` / :func:`foreign_objects` (one listing per date, in ``validate_request``): an
  ``output_uri`` may hold only what a publication of that date owns: the objects its previous
  publication's summary lists (``published_objects``) and the contract's names directly under the
  prefix (``part-NNNNN.jsonl``, ``_metrics/part-NNNNN.json``, ``_run_summary.json``,
  ``_SUCCESS``). Anything else (another date's output, a file someone put there) is not ours:
  the request is refused, and publishing never deletes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from batch_inference.contract.formats import metrics_partition, part_partition

from emr_inference.s3 import S3Uri

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

SUCCESS_NAME = "_SUCCESS"
SUMMARY_NAME = "_run_summary.json"
#: The summary field listing a publication's objects (relative to its output prefix).
PUBLISHED_OBJECTS = "published_objects"
#: Prefix fields of a date that are written or deleted by the run, besides the output.
PREFIX_FIELDS = ("input_uri", "staging_uri", "artifacts_uri")


#: (field, date, prefix) of one of a run's prefixes
Placed = tuple[str, str, S3Uri]


class OwnershipError(ValueError):
    """A prefix of the run is not the run's own; the message names the field."""


def overlaps(one: S3Uri, other: S3Uri) -> bool:
    """Whether one prefix is, or is inside, the other (same bucket)."""
    return one.bucket == other.bucket and (
        one.key.startswith(other.key) or other.key.startswith(one.key)
    )


def contains(prefix: S3Uri, obj: S3Uri) -> bool:
    """Whether the object ``obj`` is under ``prefix``."""
    return prefix.bucket == obj.bucket and obj.key.startswith(prefix.key)


def check_disjoint_prefixes(
    dates: Iterable[Mapping[str, Any]], objects: Mapping[str, str | None]
) -> None:
    """Refuse a run whose prefixes overlap (see the module docstring); :class:`OwnershipError`
    names the field, the date and the other prefix.

    ``dates``: each date's ``partition_date``, ``output_uri`` and :data:`PREFIX_FIELDS` (None
    when unset); ``objects``: field name -> object URI (the model's files; a date's supplied
    ``manifest_uri`` is added per date).
    """
    prefixes: list[Placed] = []  # every date's
    for entry in dates:
        day = entry["partition_date"]
        output = S3Uri.parse(entry["output_uri"], "output_uri", prefix=True)
        if output.key == "":
            raise OwnershipError(
                f"output_uri: {output.uri} ({day}) is a bucket root: publishing replaces what "
                "it owns under its prefix, so it needs a prefix of its own "
                "(e.g. s3://bucket/predictions/{{ partition_date }}/)"
            )
        prefixes.append(("output_uri", day, output))
        for field in PREFIX_FIELDS:
            if entry.get(field):
                prefixes.append((field, day, S3Uri.parse(entry[field], field, prefix=True)))
    for index, first in enumerate(prefixes):
        for second in prefixes[index + 1 :]:
            if overlaps(first[2], second[2]) and not _shared_by_design(first, second):
                raise OwnershipError(_overlap_message(first, second))
    for field, day, prefix in prefixes:
        if field not in ("output_uri", "staging_uri"):
            continue
        for name, uri in _objects_of(objects, dates, day):
            obj = S3Uri.parse(uri, name)
            if contains(prefix, obj):
                raise OwnershipError(
                    f"{field}: {prefix.uri} ({day}) holds {name} {obj.uri}: a run writes and "
                    "deletes under it; move one of them"
                )


def _shared_by_design(first: Placed, second: Placed) -> bool:
    """Inputs only read (dates may read one prefix, or nested ones); a run's dates share its
    artifacts prefix. Every prefix that is written or deleted per date must be apart."""
    both = {first[0], second[0]}
    return both == {"input_uri"} or (both == {"artifacts_uri"} and first[2] == second[2])


def _overlap_message(first: Placed, second: Placed) -> str:
    """``output_uri: s3://b/p/ (2026-12-06) contains the input_uri s3://b/p/in/ (2026-12-06)``:
    the output named first when it is one of them."""
    if second[0] == "output_uri" and first[0] != "output_uri":
        first, second = second, first
    (field, day, prefix), (other_field, other_day, other) = first, second
    relation = "is" if prefix == other else "is inside" if contains(other, prefix) else "contains"
    return (
        f"{field}: {prefix.uri} ({day}) {relation} the {other_field} {other.uri} ({other_day}): "
        "a run writes and deletes under its output and staging prefixes, so each prefix of a "
        "run must be apart from the others; give each its own"
    )


def _objects_of(
    objects: Mapping[str, str | None], dates: Iterable[Mapping[str, Any]], day: str
) -> Iterator[tuple[str, str]]:
    for name, uri in objects.items():
        if uri:
            yield name, uri
    for entry in dates:
        if entry.get("manifest_uri"):
            yield f"manifest_uri ({entry['partition_date']})", entry["manifest_uri"]


def is_contract_name(relative: str) -> bool:
    """Whether ``relative`` (a key relative to an output prefix) is a name a publication writes
    directly under its prefix."""
    return (
        relative in (SUCCESS_NAME, SUMMARY_NAME)
        or part_partition(relative) is not None
        or metrics_partition(relative) is not None
    )


def owned_names(summary: Mapping[str, Any] | None) -> set[str]:
    """The relative keys the publication that wrote ``summary`` listed as its own (none for a
    summary from before publications listed them: then the contract's names alone decide)."""
    listed = (summary or {}).get(PUBLISHED_OBJECTS)
    return {name for name in listed if isinstance(name, str)} if isinstance(listed, list) else set()


def is_owned(relative: str, listed: set[str]) -> bool:
    """Whether a publication of the date owns ``relative``: listed by the previous publication,
    or one of the contract's names (a part a crashed publication left)."""
    return relative in listed or is_contract_name(relative)


def read_summary(hook: S3Hook, output: S3Uri) -> dict[str, Any] | None:
    """The ``_run_summary.json`` at ``output`` (of a complete publication or not), if it parses
    as a JSON object."""
    from emr_inference import s3

    uri = output.join(SUMMARY_NAME)
    if not s3.exists(hook, uri):
        return None
    try:
        summary = s3.read_json(hook, uri)
    except ValueError:
        return None
    return summary if isinstance(summary, dict) else None


def foreign_objects(
    hook: S3Hook, output: S3Uri, summary: Mapping[str, Any] | None, limit: int = 3
) -> tuple[int, list[str]]:
    """How many objects under ``output`` a publication of its date does not own, and the first
    ``limit`` of their URIs."""
    from emr_inference import s3

    count, examples = 0, list[str]()
    listed = owned_names(summary)
    for entry in s3.iter_objects(hook, output):
        if not is_owned(entry["Key"][len(output.key) :], listed):
            count += 1
            if len(examples) < limit:
                examples.append(S3Uri(output.bucket, entry["Key"]).uri)
    return count, examples
