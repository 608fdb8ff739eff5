"""The city data-sharing platform (政务数据共享交换平台) as the enrollment service sees it.

:mod:`.contract` holds the records, the :class:`DataExchange` protocol and its errors; :mod:`.http` the signed
HTTP client; :mod:`.simulator` an in-process and HTTP simulator fed from a CSV file such as
:data:`DEMO_RECORDS_CSV`.
"""

from pathlib import Path

from .contract import (
    Answer,
    DataExchange,
    DataExchangeError,
    DataExchangeRejected,
    DataExchangeUnavailable,
    Dataset,
    GuardianshipCheck,
    HouseholdRecord,
    IdentityCheck,
    PropertyRecord,
    ResidencePermitRecord,
    SocialInsuranceRecord,
)
from .http import HttpDataExchange

__all__ = [
    "DEMO_RECORDS_CSV",
    "Answer",
    "DataExchange",
    "DataExchangeError",
    "DataExchangeRejected",
    "DataExchangeUnavailable",
    "Dataset",
    "GuardianshipCheck",
    "HouseholdRecord",
    "HttpDataExchange",
    "IdentityCheck",
    "PropertyRecord",
    "ResidencePermitRecord",
    "SocialInsuranceRecord",
]

# About 20 demo families for development and the demo data (see the table in the simulator's tests).
DEMO_RECORDS_CSV = Path(__file__).with_name("demo_records.csv")
