"""The resolved request, typed: what ``validate_request`` produces and every later task reads.

It travels between tasks as JSON (XCom; the document of docs/CONTRACTS.md "The resolved
request"). An operator reads it back with :meth:`ResolvedRequest.of` (in practice through the
shared base, ``self.run_request``): the fields are those of the pipeline config
(:class:`~emr_inference.config.RequestDefaults`: ``request.model.symbol``, ``request.cluster.core
.count``, ...), plus the run's identity and its dates, and every S3 location is parsed once into
:class:`~batch_inference.contract.s3.S3Uri` (``request.output_uri.bucket``,
``request.staging_uri.join("output")``).

Every later consumer takes the typed request, the pure builders included (EMR job flow and
sizing, the backends' checks, the run plan). The JSON form (:meth:`ResolvedRequest.as_json`) is
what travels between tasks, and stays the contract where the two sides meet: the job's settings
(:data:`batch_inference.contract.settings.SETTINGS`) read it by dotted name (the job's
arguments, the request fingerprint).

A run's request has every date under ``dates`` and the first date's locations at the top level;
:meth:`ResolvedRequest.for_date` gives one date's request (``dates_in_run`` instead of the list).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from batch_inference.contract.s3 import S3Uri, S3UriError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)

from emr_inference.backends import check_backend_name
from emr_inference.config import IsoDate, RequestDefaults


def _parser(prefix: bool) -> Callable[[Any], S3Uri]:
    def parse(value: Any) -> S3Uri:
        if isinstance(value, S3Uri):
            return value
        try:
            return S3Uri.parse(value, "uri", prefix=prefix)
        except S3UriError as error:
            raise ValueError(str(error).removeprefix("uri: ")) from None

    return parse


_AS_STRING = PlainSerializer(lambda uri: uri.uri, return_type=str)
_STRING_SCHEMA = WithJsonSchema({"type": "string", "format": "uri"})
#: An ``s3://bucket/prefix/`` location, parsed (strictly) when the request is read.
S3Prefix = Annotated[S3Uri, PlainValidator(_parser(prefix=True)), _AS_STRING, _STRING_SCHEMA]
#: An ``s3://bucket/key`` object, parsed (strictly) when the request is read.
S3Object = Annotated[S3Uri, PlainValidator(_parser(prefix=False)), _AS_STRING, _STRING_SCHEMA]


class DateLocations(BaseModel):
    """Where one date of the run reads, stages and publishes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partition_date: IsoDate
    input_uri: S3Prefix | None  #: None when a ready ``manifest_uri`` is given
    manifest_uri: S3Object | None
    output_uri: S3Prefix
    staging_uri: S3Prefix  #: ``<staging root><pipeline>/<run key>/<date>/``
    artifacts_uri: S3Prefix  #: ``<artifacts root><pipeline>/``


class ResolvedRequest(RequestDefaults):
    """A run's (or one date's) resolved request: the request fields, the run, the dates."""

    model_config = ConfigDict(frozen=True)

    dag_id: str
    run_id: str
    pipeline: str
    backend: Annotated[str, AfterValidator(check_backend_name)]
    # the first date's locations (a date's own request: that date's), rendered and parsed. The
    # ignores: these fields narrow RequestDefaults' template strings to parsed S3Uri on purpose;
    # a ResolvedRequest is never used where a RequestDefaults is expected.
    partition_date: IsoDate
    input_uri: S3Prefix | None  # type: ignore[assignment]
    manifest_uri: S3Object | None  # type: ignore[assignment]
    output_uri: S3Prefix  # type: ignore[assignment]
    staging_uri: S3Prefix  # type: ignore[assignment]
    artifacts_uri: S3Prefix  # type: ignore[assignment]
    #: every date of the run, sorted (None in a date's own request)
    dates: list[DateLocations] | None = None
    #: the number of dates of the run (a date's own request only)
    dates_in_run: int | None = None
    #: what the date's published rows depend on (a date's request, from ``stage_manifest``)
    request_fingerprint: str | None = None

    @classmethod
    def of(cls, value: ResolvedRequest | Mapping[str, Any]) -> ResolvedRequest:
        """The typed request from its JSON form (an XCom) or as it is."""
        return value if isinstance(value, cls) else cls.model_validate(value)

    def as_json(self) -> dict[str, Any]:
        """The JSON form: what travels through XCom and what the job's settings read by name."""
        return self.model_dump(mode="json")

    def for_date(self, date: DateLocations) -> ResolvedRequest:
        """The request of one date of the run: that date's locations and ``dates_in_run``."""
        return self.model_copy(
            update={
                **dict(date),
                "dates": None,
                "partition_dates": None,
                "dates_in_run": len(self.dates or ()),
            }
        )

    def date_requests(self) -> list[ResolvedRequest]:
        """Every date's own request, in date order."""
        return [self.for_date(date) for date in self.dates or ()]

    @property
    def job_output_uri(self) -> S3Uri:
        """Where the job writes this date's staged output (parts and ``_metrics/``)."""
        return S3Uri(self.staging_uri.bucket, self.staging_uri.key + "output/")

    @property
    def manifest_prefix(self) -> S3Uri:
        """Where ``stage_manifest`` writes this date's manifest.json and shards."""
        return S3Uri(self.staging_uri.bucket, self.staging_uri.key + "manifest/")

    @property
    def run_dates(self) -> int:
        """How many dates the run has (1 for a one-date run)."""
        return self.dates_in_run or len(self.dates or ()) or 1
