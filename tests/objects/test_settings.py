"""STORAGE_URL, STORAGE_ENDPOINT and STORAGE_REGION: what is accepted, and the
one-line errors (naming the setting, never a secret) for what is not."""

from __future__ import annotations

import pytest

from bot.objects import StorageSettingError, StorageSettings


@pytest.mark.parametrize("url, bucket, prefix", [
    ("s3://recordings", "recordings", ""),
    ("s3://recordings/", "recordings", ""),
    ("s3://my.bucket-1/voice", "my.bucket-1", "voice/"),
    ("s3://my-bucket/voice/bot-a/", "my-bucket", "voice/bot-a/"),
    ("S3://my-bucket//voice//", "my-bucket", "voice/"),
    ("  s3://my-bucket/voice  ", "my-bucket", "voice/"),
])
def test_storage_url_names_bucket_and_prefix(url: str, bucket: str, prefix: str) -> None:
    settings = StorageSettings.parse(url)
    assert (settings.bucket, settings.prefix, settings.endpoint, settings.region) == (bucket, prefix, None, None)
    assert settings.url == f"s3://{bucket}/{prefix}"


@pytest.mark.parametrize("endpoint, expected", [
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("https://s3.example.org/", "https://s3.example.org"),
    ("HTTPS://minio:9000", "https://minio:9000"),
    ("http://[::1]:9000", "http://[::1]:9000"),
])
def test_endpoint_is_an_http_url(endpoint: str, expected: str) -> None:
    assert StorageSettings.parse("s3://bucket", endpoint).endpoint == expected


@pytest.mark.parametrize("region", ["eu-central-1", "auto", "us-east-1"])
def test_region_is_a_name(region: str) -> None:
    assert StorageSettings.parse("s3://bucket", None, region).region == region


def test_empty_endpoint_and_region_are_unset() -> None:
    settings = StorageSettings.parse("s3://bucket", "", "")
    assert settings.endpoint is None and settings.region is None


@pytest.mark.parametrize("url, endpoint, region, setting, words", [
    ("https://bucket/prefix", None, None, "STORAGE_URL", "expected s3://bucket/prefix"),
    ("bucket/prefix", None, None, "STORAGE_URL", "expected s3://bucket/prefix"),
    ("s3://", None, None, "STORAGE_URL", "not a bucket name"),
    ("s3://ab", None, None, "STORAGE_URL", "not a bucket name"),
    ("s3://My_Bucket", None, None, "STORAGE_URL", "not a bucket name"),
    ("s3://bucket:9000/x", None, None, "STORAGE_URL", "not a bucket name"),
    ("s3://bucket/a/../b", None, None, "STORAGE_URL", "not a plain key name"),
    ("s3://bucket/a b", None, None, "STORAGE_URL", "not a plain key name"),
    ("s3://bucket/x?versionId=1", None, None, "STORAGE_URL", "without ? or #"),
    ("s3://bucket", "ftp://host", None, "STORAGE_ENDPOINT", "expected an http or https URL"),
    ("s3://bucket", "minio:9000", None, "STORAGE_ENDPOINT", "expected an http or https URL"),
    ("s3://bucket", "http://host:99999", None, "STORAGE_ENDPOINT", "bad port"),
    ("s3://bucket", "http://host/bucket", None, "STORAGE_ENDPOINT", "only scheme, host and port"),
    ("s3://bucket", None, "Europe 1", "STORAGE_REGION", "expected a region name"),
])
def test_malformed_settings_get_one_line_naming_the_setting(
        url: str, endpoint: str | None, region: str | None, setting: str, words: str) -> None:
    with pytest.raises(StorageSettingError) as caught:
        StorageSettings.parse(url, endpoint, region)
    message = str(caught.value)
    assert message.startswith(f"{setting}: ") and words in message
    assert "\n" not in message


@pytest.mark.parametrize("url, endpoint, setting", [
    ("s3://AKIAEXAMPLEKEY:s3cr3t-Secret@bucket/prefix", None, "STORAGE_URL"),
    ("s3://bucket", "https://AKIAEXAMPLEKEY:s3cr3t-Secret@minio:9000", "STORAGE_ENDPOINT"),
])
def test_credentials_in_a_url_are_refused_without_repeating_them(url: str, endpoint: str | None,
                                                                 setting: str) -> None:
    with pytest.raises(StorageSettingError) as caught:
        StorageSettings.parse(url, endpoint)
    message = str(caught.value)
    assert message.startswith(f"{setting}: credentials do not belong in the URL")
    assert "s3cr3t" not in message and "AKIAEXAMPLEKEY" not in message and "\n" not in message
