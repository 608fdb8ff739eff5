"""Enrollment service settings (environment prefix ``ENROLLMENT_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from kit.settings import LOCAL_SECRET_PREFIX, ServiceSettings


class EnrollmentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENROLLMENT_", extra="ignore")

    service_name: str = "enrollment"
    database_url: str = "sqlite:///var/data/enrollment.db"
    http_port: int = 8102
    public_base_url: str = "http://127.0.0.1:8102"

    # Children's and applicants' resident ID numbers are stored AES-GCM encrypted and found by keyed hash.
    pii_encryption_key: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "enrollment-pii-encryption-key")
    pii_hash_key: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "enrollment-pii-hash-key")

    # The city's data-sharing platform (政务数据共享交换平台): the real one over HTTP, or the simulator fed by a CSV.
    data_exchange: Literal["http", "simulator"] = "simulator"
    data_exchange_url: str = "http://127.0.0.1:8190"
    data_exchange_app_id: str = "edu-enrollment"
    data_exchange_secret: SecretStr = SecretStr(LOCAL_SECRET_PREFIX + "data-exchange-secret")
    data_exchange_timeout_seconds: float = Field(default=5.0, gt=0)
    data_exchange_retries: int = Field(default=2, ge=0, le=10)
    data_exchange_records_csv: str | None = None  # simulator only; None: the bundled demo records
    # A verification the platform could not answer is tried again after these delays (the last one repeats).
    verification_retry_seconds: list[float] = Field(default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0])
    verification_poll_seconds: float = Field(default=2.0, gt=0)
    # Social insurance counts for admission only when paid in this city.
    insurance_city: str = "杭州市"

    # Documents a family may upload for what could not be verified.
    document_max_bytes: int = 5 * 1024 * 1024

    oneroster_max_limit: int = Field(default=1000, ge=1)
    changes_max_limit: int = Field(default=1000, ge=1)


@lru_cache
def get_settings() -> EnrollmentSettings:
    return EnrollmentSettings()
