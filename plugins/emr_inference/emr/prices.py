"""Hourly prices of the instance types in :mod:`emr_inference.emr.instance_types`, for the run plan.

One region (``REGION``), on-demand Linux EC2 plus EMR's per-instance uplift, in USD per hour.
Estimates only: Spot nodes are priced here at on-demand (an upper bound: Spot saves money, the
plan does not count on it), EBS volumes, S3 requests and data transfer are not included.

The 7th-generation types of the instance table (c7i, m7i, and the Graviton c7g, m7g) are not
priced: neither their EMR uplift nor (for c7g, m7g) their EC2 on-demand price in ``REGION`` could
be read from an AWS price page or price list here (the stored copies of the EMR pricing page lack
its per-type table; sought again 2026-12-07), and a plan of a cluster using one says "no price"
rather than guess. Add them from the price list (below) with ``PRICED_ON`` when you can.

Source: AWS's public price list for ``REGION`` (Amazon EC2 On-Demand pricing, Linux; Amazon EMR
pricing, "Amazon EC2 instances" table), as of ``PRICED_ON``. This machine has no network: the
table was written by hand from those pages and is not refreshed automatically. To check or
refresh a type: ``aws pricing get-products --region us-east-1 --service-code AmazonEC2`` (and
``ElasticMapReduce``) with filters on ``instanceType`` and ``location``, then update the table and
``PRICED_ON`` together.
"""

from __future__ import annotations

from dataclasses import dataclass

REGION = "us-east-1"
PRICED_ON = "2026-11-28"
SOURCE = (
    f"AWS public price list, {REGION}, on-demand Linux EC2 + Amazon EMR uplift, as of "
    f"{PRICED_ON} (emr_inference/emr/prices.py)"
)


@dataclass(frozen=True)
class HourlyPrice:
    """What one instance of a type costs per hour in an EMR cluster."""

    ec2_usd: float
    emr_usd: float

    @property
    def total_usd(self) -> float:
        """EC2 plus the EMR uplift."""
        return self.ec2_usd + self.emr_usd


_TABLE: dict[str, tuple[float, float]] = {  # type: (EC2 on-demand, EMR uplift), USD per hour
    "c5.xlarge": (0.17, 0.048),
    "c5.2xlarge": (0.34, 0.085),
    "c5.4xlarge": (0.68, 0.17),
    "c5.9xlarge": (1.53, 0.27),
    "c5.12xlarge": (2.04, 0.27),
    "c5.18xlarge": (3.06, 0.27),
    "c5.24xlarge": (4.08, 0.27),
    "c5d.xlarge": (0.192, 0.048),
    "c5d.2xlarge": (0.384, 0.096),
    "c5d.4xlarge": (0.768, 0.192),
    "c5d.9xlarge": (1.728, 0.27),
    "c5d.18xlarge": (3.456, 0.27),
    "c5n.xlarge": (0.216, 0.054),
    "c5n.2xlarge": (0.432, 0.108),
    "c5n.4xlarge": (0.864, 0.216),
    "c5n.9xlarge": (1.944, 0.27),
    "c5n.18xlarge": (3.888, 0.27),
    "m5.xlarge": (0.192, 0.048),
    "m5.2xlarge": (0.384, 0.096),
    "m5.4xlarge": (0.768, 0.192),
    "m5.8xlarge": (1.536, 0.27),
    "m5.12xlarge": (2.304, 0.27),
    "m5.16xlarge": (3.072, 0.27),
    "m5.24xlarge": (4.608, 0.27),
    "m5d.xlarge": (0.226, 0.057),
    "m5d.2xlarge": (0.452, 0.113),
    "m5d.4xlarge": (0.904, 0.226),
    "m5d.8xlarge": (1.808, 0.27),
    "m5d.12xlarge": (2.712, 0.27),
    "m5d.16xlarge": (3.616, 0.27),
    "m5d.24xlarge": (5.424, 0.27),
    "r5.xlarge": (0.252, 0.063),
    "r5.2xlarge": (0.504, 0.126),
    "r5.4xlarge": (1.008, 0.252),
    "r5.8xlarge": (2.016, 0.27),
    "r5.12xlarge": (3.024, 0.27),
    "r5.16xlarge": (4.032, 0.27),
    "r5.24xlarge": (6.048, 0.27),
    "r5d.xlarge": (0.288, 0.072),
    "r5d.2xlarge": (0.576, 0.144),
    "r5d.4xlarge": (1.152, 0.27),
    "r5d.8xlarge": (2.304, 0.27),
    "r5d.12xlarge": (3.456, 0.27),
    "r5d.16xlarge": (4.608, 0.27),
    "r5d.24xlarge": (6.912, 0.27),
}

PRICES: dict[str, HourlyPrice] = {name: HourlyPrice(*usd) for name, usd in _TABLE.items()}


def hourly_price(name: str) -> HourlyPrice | None:
    """The price of one instance of ``name`` per hour, or None when the table lacks it."""
    return PRICES.get(name)
