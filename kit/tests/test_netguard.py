"""The SSRF guard: in production the platform calls only https URLs on public addresses."""

from __future__ import annotations

import pytest

from kit.netguard import UnsafeUrl, check_outbound_url, resolve_public


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.0.0.8/hook",
        "https://172.16.3.4/hook",
        "https://192.168.1.20:8443/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://0.0.0.0/hook",
        "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
        "https://[fd00::1]/hook",  # unique local
        "https://2130706433/hook",  # 127.0.0.1 as one number
        "https://0x7f.1/hook",  # 127.0.0.1 in hex, shortened
        "https://127.1/hook",
        "https://localhost/hook",
        "https://localhost./hook",
        "https://api.localhost/hook",
        "https://metadata.google.internal/hook",
        "https://appstore.edu.svc.cluster.local/hook",
        "https://printer.local/hook",
    ],
)
def test_private_loopback_and_internal_targets_are_refused_in_production(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_outbound_url(url, production=True, resolve=False)


@pytest.mark.parametrize("url", ["http://vendor.example.cn/hook", "ftp://vendor.example.cn/hook", "https:///hook"])
def test_production_needs_an_absolute_https_url(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_outbound_url(url, production=True, resolve=False)


def test_public_targets_pass_in_production() -> None:
    check_outbound_url("https://1.1.1.1/hook", production=True)
    check_outbound_url("https://[2606:4700:4700::1111]/hook", production=True)
    check_outbound_url("https://hooks.vendor.example.cn/edu", production=True, resolve=False)


def test_a_name_resolving_to_loopback_is_refused_when_resolved() -> None:
    with pytest.raises(UnsafeUrl, match="private, loopback or reserved"):
        resolve_public("localhost", 443)


def test_an_unresolvable_name_is_refused_in_production() -> None:
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_outbound_url("https://no-such-host.invalid/hook", production=True)


def test_local_development_may_call_loopback() -> None:
    check_outbound_url("http://127.0.0.1:8110/webhooks", production=False)
    with pytest.raises(UnsafeUrl):
        check_outbound_url("file:///etc/passwd", production=False)
