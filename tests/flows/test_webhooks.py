"""Alert input, checked before anything is contacted, and webhook addresses shown masked."""

import pytest

from experiments.errors import InputError
from flows.webhooks import KINDS, is_slack, mask_url, parse_kinds, require_webhook_url


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.com/services/T0AAA/B0BBB/XyZsecret123",
     "https://hooks.slack.com/services/***"),
    ("http://127.0.0.1:8123/hook/s3cr3t-token", "http://127.0.0.1:8123/hook/***"),
    ("https://example.com/webhook?key=abcdef", "https://example.com/***?***"),
    ("https://user:pa55@example.com/notify", "https://***@example.com/***"),
    ("https://ntfy.sh/mytopic", "https://ntfy.sh/***"),
    ("https://example.com/abcdefghijklmnopqrstuvwxyz/x", "https://example.com/***"),
    ("https://example.com/T0123/hook", "https://example.com/***"),
    ("https://example.com/a/b/c", "https://example.com/a/***"),
    ("https://example.com", "https://example.com"),
    ("https://example.com/?token=x", "https://example.com?***"),
    ("https://example.com/hooks/x#token", "https://example.com/hooks/***#***"),
    ("not a url", "***"),
    ("http://[::1", "***"),
])
def test_mask_url_hides_the_secret_parts(url, shown):
    assert mask_url(url) == shown


@pytest.mark.parametrize("secret, url", [
    ("XyZsecret123", "https://hooks.slack.com/services/T0AAA/B0BBB/XyZsecret123"),
    ("pa55", "https://user:pa55@example.com/notify"),
    ("abcdef", "https://example.com/webhook?key=abcdef"),
    ("0123456789", "https://example.com/0123456789"),
    ("mytopic", "https://ntfy.sh/mytopic"),
])
def test_a_secret_never_appears_in_the_masked_url(secret, url):
    assert secret not in mask_url(url)


@pytest.mark.parametrize("text, kinds", [
    (None, KINDS),
    ("drift", ("drift",)),
    ("promotion, Failure", ("promotion", "failure")),
    ("failure,drift,drift", ("drift", "failure")),
])
def test_parse_kinds(text, kinds):
    assert parse_kinds(text) == kinds


@pytest.mark.parametrize("text, named", [("drift,explosion", "explosion"), (" , ", "no event kind")])
def test_unknown_or_no_kind_is_refused(text, named):
    with pytest.raises(InputError, match=named):
        parse_kinds(text)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "http://", "file:///etc/passwd",
                                 "javascript:alert(1)", ""])
def test_only_http_urls_with_a_host_are_accepted(url):
    with pytest.raises(InputError, match="http:// or https://"):
        require_webhook_url(url)


def test_the_refusal_does_not_print_the_secret():
    with pytest.raises(InputError) as error:
        require_webhook_url("ftp://user:hunter2@example.com/token123")
    assert "hunter2" not in str(error.value) and "token123" not in str(error.value)


@pytest.mark.parametrize("url, slack", [
    ("https://hooks.slack.com/services/T/B/x", True),
    ("https://hooks.slack.com.evil.example/services/T/B/x", False),
    ("https://example.com/services/x", False),
])
def test_is_slack(url, slack):
    assert is_slack(url) is slack
