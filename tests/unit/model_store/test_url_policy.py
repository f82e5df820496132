"""The allow-list: every check runs on the URL as given, before anything is fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from kserve_torchserve.config.model_api import storage_location_patterns
from kserve_torchserve.errors import ManagementError
from kserve_torchserve.model_store.url_policy import UrlPolicy, normalise_url


@pytest.mark.parametrize("url,fragment", [
    ("", "empty"),
    ("s3://b/models/ x.mar", "spaces"),
    ("s3://b/models/x.mar\n", "control"),
    ("http://h/models/%2e%2e/x.mar", "percent-encoded"),
    ("http://h/models/%2F..%2Fx.mar", "percent-encoded"),
    ("http://h/models/..%5cx.mar", "percent-encoded"),
    ("http://h/models/../x.mar", "'..'"),
    ("/mnt/models/../etc/passwd", "'..'"),
    ("http://h/models\\..\\x.mar", "backslashes"),
    ("http://user:secret@h/models/x.mar", "user information"),
    ("ftp://h/x.mar", "scheme"),
    ("gopher://h/x", "scheme"),
    ("relative/x.mar", "absolute path"),
])
def test_urls_no_list_may_allow_are_400(url: str, fragment: str) -> None:
    with pytest.raises(ManagementError) as info:
        normalise_url(url)
    assert info.value.status == 400 and fragment in info.value.message
    assert url.strip() == "" or url not in info.value.message  # the input is never echoed


def test_scheme_and_host_are_lower_cased_path_kept() -> None:
    assert normalise_url("S3://Bucket/Models/X.mar") == "s3://bucket/Models/X.mar"
    assert normalise_url("https://Host.example.com:8443/a/b.mar?sig=1") == "https://host.example.com:8443/a/b.mar"


def test_patterns_match_the_whole_url() -> None:
    policy = UrlPolicy((r"s3://models/.*", r"https://host/models/.*"))
    assert policy.check("s3://models/new-model.mar") == "s3://models/new-model.mar"
    for url in ("s3://models-evil/x.mar", "s3://other/models/x.mar", "https://host/models-x/y.mar",
                "https://evil.com/https://host/models/x.mar", "http://host/models/x.mar"):
        with pytest.raises(ManagementError) as info:
            policy.check(url)
        assert info.value.status == 403 and "TS_ALLOWED_URLS" in info.value.message


def test_a_symlink_out_of_an_allowed_directory_is_refused(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "models", tmp_path / "secret"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    policy = UrlPolicy(storage_location_patterns(str(allowed)))
    assert policy.check(str(allowed / "model.mar"))
    assert policy.check(f"file://{allowed}/model.mar")
    with pytest.raises(ManagementError, match="TS_ALLOWED_URLS"):
        policy.check(str(allowed / "link" / "model.mar"))
    with pytest.raises(ManagementError, match="TS_ALLOWED_URLS"):
        policy.check(str(tmp_path / "models-other" / "x.mar"))


def test_default_list_is_the_storage_location() -> None:
    assert storage_location_patterns("s3://Bucket/models/digits/") == (r"s3://bucket/models/digits(/.*)?",)
    assert storage_location_patterns("gs://b/models/digits.mar") == (r"gs://b/models(/.*)?",)
    policy = UrlPolicy(storage_location_patterns("https://host/models/digits.mar"))
    assert policy.allows("https://host/models/other.mar") and not policy.allows("https://host/elsewhere/x.mar")
