"""Unit tests for the GA4-style channel grouping (scoring/channels.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadflow.scoring.channels import CHANNEL_MEDIUM, CHANNEL_POINTS, Channel, classify, source_medium

SPEC_POINTS = {
    "Paid Search": 15,
    "Organic Search": 10,
    "Direct": 8,
    "Paid Social": 5,
    "Organic Social": 5,
    "Email": 3,
}


def channel_of(
    source: str | None = None,
    medium: str | None = None,
    campaign: str | None = None,
    referrer: str | None = None,
    landing: str | None = None,
) -> str:
    return classify(source, medium, campaign, referrer, landing).name


# --- the brief's examples -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "medium", "expected"),
    [
        ("google", "cpc", "Paid Search"),
        ("bing", "ppc", "Paid Search"),
        ("facebook", "paid_social", "Paid Social"),
        ("facebook", "cpc", "Paid Social"),
        ("linkedin", "social", "Organic Social"),
        ("google", "organic", "Organic Search"),
        ("newsletter", "email", "Email"),
        ("anything", "display", "Display"),
        ("x", "affiliate", "Affiliates"),  # "x" is a placeholder source, not X/Twitter
        ("partner", "affiliate", "Affiliates"),
        (None, None, "Direct"),
    ],
)
def test_utm_examples(source: str | None, medium: str | None, expected: str) -> None:
    assert channel_of(source, medium) == expected


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        ("https://www.google.com/", "Organic Search"),
        ("https://t.co/abc", "Organic Social"),
        ("https://blog.example.org", "Referral"),
    ],
)
def test_referrer_examples(referrer: str, expected: str) -> None:
    assert channel_of(referrer=referrer) == expected


def test_spec_example_lead_channel() -> None:
    assert classify("google", "cpc", "nextcloud-q4", None, None) == Channel(
        name="Paid Search", medium="paid", source="google", points=15
    )


# --- UTM tags: GA4's rule order -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "medium", "campaign", "expected"),
    [
        # normalisation of the tags
        ("GOOGLE", " CPC ", None, "Paid Search"),
        ("Google", "Organic", None, "Organic Search"),
        ("  ", "  ", None, "Direct"),
        ("(direct)", "(none)", None, "Direct"),
        # cross-network wins over everything after Direct
        ("google", "cpc", "Cross-Network Summer", "Cross-network"),
        # paid shopping: shopping site or shop campaign, with a paid medium
        ("amazon", "cpc", None, "Paid Shopping"),
        ("partner", "cpc", "summer-shop", "Paid Shopping"),
        ("google", "cpc", "shopping", "Paid Shopping"),
        ("partner", "cpc", "workshop", "Paid Other"),  # "workshop" is not a shop campaign
        # paid search / social / video
        ("duckduckgo", "paid", None, "Paid Search"),
        ("google", "cpm", None, "Paid Search"),  # cpm matches the paid regex before Display is tried
        ("facebook", "retargeting", None, "Paid Social"),
        ("tiktok", "paid-social", None, "Paid Social"),
        ("instagram", "cpc", None, "Paid Social"),
        ("youtube", "cpc", None, "Paid Video"),
        # display mediums
        ("partner", "banner", None, "Display"),
        ("partner", "expandable", None, "Display"),
        ("partner", "interstitial", None, "Display"),
        ("partner", "cpm", None, "Display"),
        ("google", "display", None, "Display"),
        # other paid
        ("newsletter", "cpc", None, "Paid Other"),
        ("partner", "retargeting", None, "Paid Other"),
        (None, "cpc", None, "Paid Other"),
        # organic
        ("ebay", "referral", None, "Organic Shopping"),
        ("partner", "referral", "summer_shopping", "Organic Shopping"),
        ("reddit", "referral", None, "Organic Social"),
        ("newsletter", "social", None, "Organic Social"),
        ("partner", "sm", None, "Organic Social"),
        ("partner", "social-media", None, "Organic Social"),
        ("youtube", "referral", None, "Organic Video"),
        ("partner", "video", None, "Organic Video"),
        ("google", None, None, "Organic Search"),
        ("partner", "organic", None, "Organic Search"),
        ("google", "email", None, "Organic Search"),  # Organic Search comes before Email in GA4
        # the rest
        ("partner", "referral", None, "Referral"),
        ("partner", "app", None, "Referral"),
        ("partner", "link", None, "Referral"),
        ("email", None, None, "Email"),
        ("E-Mail", "newsletter", None, "Email"),
        ("mailchimp", "e_mail", None, "Email"),
        ("partner", "affiliate", None, "Affiliates"),
        ("podcast", "audio", None, "Audio"),
        ("sms", None, None, "SMS"),
        ("twilio", "SMS", None, "SMS"),
        ("app", "push", None, "Mobile Push Notifications"),
        ("app", "web-push", None, "Mobile Push Notifications"),
        ("app", "mobile", None, "Mobile Push Notifications"),
        ("app", "in-app-notification", None, "Mobile Push Notifications"),
        ("foo", "bar", None, "Unassigned"),
        ("foo", None, None, "Unassigned"),
    ],
)
def test_utm_rules(source: str | None, medium: str | None, campaign: str | None, expected: str) -> None:
    assert channel_of(source, medium, campaign) == expected


def test_utm_tags_win_over_the_referrer() -> None:
    assert channel_of("google", "cpc", referrer="https://www.facebook.com/") == "Paid Search"
    assert channel_of("newsletter", "email", referrer="https://www.google.com/") == "Email"


def test_campaign_alone_is_direct() -> None:
    assert channel_of(campaign="spring-sale") == "Direct"


# --- referrer (no UTM tags) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("referrer", "landing", "expected"),
    [
        ("https://www.google.co.uk/search?q=nextcloud", None, "Organic Search"),
        ("https://www.bing.com/search?q=x", None, "Organic Search"),
        ("https://duckduckgo.com/", None, "Organic Search"),
        ("https://search.brave.com/search?q=x", None, "Organic Search"),
        ("https://www.facebook.com/", None, "Organic Social"),
        ("https://m.facebook.com/story", None, "Organic Social"),
        ("https://l.facebook.com/l.php?u=x", None, "Organic Social"),
        ("https://www.linkedin.com/feed", None, "Organic Social"),
        ("https://lnkd.in/abc", None, "Organic Social"),
        ("https://www.reddit.com/r/selfhosted", None, "Organic Social"),
        ("https://news.google.com/articles/x", None, "Organic Search"),
        ("https://news.ycombinator.com/item?id=1", None, "Referral"),
        ("https://www.bbc.co.uk/news", None, "Referral"),
        ("https://blog.example.org:8080/post", None, "Referral"),
        ("blog.example.org/post", None, "Referral"),  # no scheme
        ("https://blog.example.org", "", "Referral"),
        # same host as the landing page (with or without www, any case) is Direct
        ("https://example.com/other", "https://example.com/landing", "Direct"),
        ("https://EXAMPLE.com/other", "https://www.example.com/landing", "Direct"),
        ("https://www.example.com/other", "https://example.com/landing", "Direct"),
        # another sub-domain of the same site is a referral
        ("https://shop.example.com/x", "https://example.com/landing", "Referral"),
        # no or unusable referrer
        (None, None, "Direct"),
        ("", None, "Direct"),
        (None, "https://example.com/landing", "Direct"),
        ("http://[::1", None, "Direct"),
    ],
)
def test_referrer_rules(referrer: str | None, landing: str | None, expected: str) -> None:
    assert channel_of(referrer=referrer, landing=landing) == expected


@pytest.mark.parametrize(
    "referrer",
    [
        "https://ask.metafilter.com/question",  # not the "ask" search engine
        "https://x.example.org/",  # not X
        "https://line.example.org/",  # not LINE
        "https://google.example.org/",  # not Google
    ],
)
def test_unrelated_host_with_a_site_label_is_referral(referrer: str) -> None:
    assert channel_of(referrer=referrer) == "Referral"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((None, None, None), ("(direct)", "(none)")),
        (("Google", None, None), ("google", "(not set)")),
        ((None, "CPC", None), ("(not set)", "cpc")),
        ((None, None, "https://www.google.com/"), ("www.google.com", "organic")),
        ((None, None, "https://t.co/abc"), ("t.co", "social")),
        ((None, None, "https://blog.example.org/x"), ("blog.example.org", "referral")),
    ],
)
def test_source_medium(args: tuple[str | None, str | None, str | None], expected: tuple[str, str]) -> None:
    assert source_medium(*args) == expected


def test_source_medium_same_host_is_direct() -> None:
    assert source_medium(None, None, "https://www.example.com/a", "https://example.com/b") == (
        "(direct)",
        "(none)",
    )


# --- points and medium --------------------------------------------------------------------------------


def test_channel_points_table_matches_the_spec() -> None:
    assert CHANNEL_POINTS == SPEC_POINTS


@pytest.mark.parametrize(
    ("source", "medium", "referrer", "name", "medium_column", "points"),
    [
        ("google", "cpc", None, "Paid Search", "paid", 15),
        ("google", "organic", None, "Organic Search", "organic", 10),
        (None, None, None, "Direct", "direct", 8),
        ("facebook", "cpc", None, "Paid Social", "social", 5),
        ("linkedin", "social", None, "Organic Social", "social", 5),
        ("newsletter", "email", None, "Email", "email", 3),
        (None, None, "https://blog.example.org", "Referral", "referral", 0),
        ("anything", "display", None, "Display", "paid", 0),
        ("partner", "affiliate", None, "Affiliates", "affiliate", 0),
        ("foo", "bar", None, "Unassigned", "other", 0),
    ],
)
def test_classify_points_and_medium(
    source: str | None, medium: str | None, referrer: str | None, name: str, medium_column: str, points: int
) -> None:
    result = classify(source, medium, None, referrer)
    assert (result.name, result.medium, result.points) == (name, medium_column, points)


_maybe_text = st.one_of(st.none(), st.text(max_size=30))
_sources = st.one_of(
    _maybe_text, st.sampled_from(["google", "facebook", "amazon", "youtube", "email", "sms"])
)
_mediums = st.one_of(
    _maybe_text,
    st.sampled_from(
        ["cpc", "ppc", "paid", "display", "cpm", "social", "organic", "email", "referral", "push"]
    ),
)
_urls = st.one_of(
    _maybe_text,
    st.sampled_from(["https://www.google.com/", "https://t.co/x", "https://blog.example.org", "http://[::1"]),
)


@given(_sources, _mediums, _maybe_text, _urls, _urls)
def test_classify_is_total_and_consistent(
    source: str | None, medium: str | None, campaign: str | None, referrer: str | None, landing: str | None
) -> None:
    result = classify(source, medium, campaign, referrer, landing)
    assert result.name in CHANNEL_MEDIUM
    assert result.medium == CHANNEL_MEDIUM[result.name]
    assert result.points == SPEC_POINTS.get(result.name, 0)
    assert 0 <= result.points <= 15
    if not (source or "").strip() and not (medium or "").strip() and not referrer:
        assert result.name == "Direct"
        assert result.points == 8
