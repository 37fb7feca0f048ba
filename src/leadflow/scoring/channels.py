"""Traffic channel classification after Google Analytics 4's default channel grouping.

The rules are applied in GA4's order over ``utm_source``, ``utm_medium``, ``utm_campaign`` and, when
no UTM tags are present, the referrer host (a search engine referrer is organic search, a social
network is organic social, any other host a referral, none at all direct). The source categories
(search, social, video, shopping sites) are a subset of GA4's published lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

SEARCH_SITES = frozenset(
    [
        "google",
        "bing",
        "yahoo",
        "duckduckgo",
        "baidu",
        "yandex",
        "ecosia",
        "naver",
        "seznam",
        "qwant",
        "startpage",
        "ask",
        "aol",
        "so.com",
        "sogou",
        "daum",
        "brave",
        "search.brave.com",
        "perplexity",
        "chatgpt.com",
        "yahoo.co.jp",
        "msn",
        "ekoru",
        "mojeek",
    ]
)
SOCIAL_SITES = frozenset(
    [
        "facebook",
        "fb",
        "instagram",
        "ig",
        "linkedin",
        "lnkd.in",
        "twitter",
        "t.co",
        "x.com",
        "tiktok",
        "pinterest",
        "reddit",
        "snapchat",
        "quora",
        "tumblr",
        "vk",
        "threads",
        "mastodon",
        "whatsapp",
        "telegram",
        "wechat",
        "weibo",
        "discord",
        "meetup",
        "xing",
        "line",
        "nextdoor",
    ]
)
VIDEO_SITES = frozenset(["youtube", "youtu.be", "vimeo", "dailymotion", "twitch", "wistia", "ted"])
SHOPPING_SITES = frozenset(["amazon", "ebay", "etsy", "shopify", "walmart", "alibaba", "aliexpress"])

PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
SHOPPING_CAMPAIGN = re.compile(r"^(.*(([^a-df-z]|^)shop|shopping).*)$")
DISPLAY_MEDIUMS = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
SOCIAL_MEDIUMS = frozenset(
    {"social", "social-network", "social-media", "sm", "social network", "social media"}
)
EMAIL_VALUES = frozenset({"email", "e-mail", "e_mail", "e mail"})

# Score points per channel (the spec's "Campaign Source Quality", 15 points).
CHANNEL_POINTS = {
    "Paid Search": 15,
    "Organic Search": 10,
    "Direct": 8,
    "Paid Social": 5,
    "Organic Social": 5,
    "Email": 3,
}

# The spec's ``medium`` column (paid, organic, email, social, ...) derived from the channel.
CHANNEL_MEDIUM = {
    "Paid Search": "paid",
    "Paid Shopping": "paid",
    "Paid Video": "paid",
    "Paid Other": "paid",
    "Display": "paid",
    "Cross-network": "paid",
    "Paid Social": "social",
    "Organic Social": "social",
    "Organic Search": "organic",
    "Organic Shopping": "organic",
    "Organic Video": "organic",
    "Email": "email",
    "Referral": "referral",
    "Direct": "direct",
    "Affiliates": "affiliate",
    "Audio": "audio",
    "SMS": "sms",
    "Mobile Push Notifications": "push",
    "Unassigned": "other",
}


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    medium: str
    source: str
    points: int


_SUFFIX_LABELS = frozenset({"com", "co", "org", "net", "ac", "gov", "edu", "ne", "or", "go", "gob"})


def _host_key(host: str) -> set[str]:
    """Names a host may match by: the host itself (without ``www.``/``m.``) and its brand label.

    The brand is the label left of the public suffix: google.com, google.co.uk and news.google.com
    all give ``google``; ``ask.metafilter.com`` gives ``metafilter`` (not ``ask``).
    """
    host = host.lower().strip(".")
    host = host.removeprefix("www.").removeprefix("m.")
    keys = {host}
    labels = host.split(".")
    if len(labels) >= 2:
        rest = labels[:-1]  # drop the top-level domain
        while len(rest) > 1 and rest[-1] in _SUFFIX_LABELS:
            rest = rest[:-1]
        keys.add(rest[-1])
    return keys


def _in(source: str, sites: frozenset[str]) -> bool:
    if not source:
        return False
    return source in sites or bool(_host_key(source) & sites)


def _referrer_host(url: str | None) -> str:
    if not url:
        return ""
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname
    except ValueError:
        return ""
    return (host or "").lower()


def source_medium(
    utm_source: str | None,
    utm_medium: str | None,
    referrer_url: str | None,
    landing_page_url: str | None = None,
) -> tuple[str, str]:
    """The (source, medium) pair GA4 would record for the session."""
    src = (utm_source or "").strip().lower()
    med = (utm_medium or "").strip().lower()
    if src or med:
        return src or "(not set)", med or "(not set)"
    ref_host = _referrer_host(referrer_url)
    own_host = _referrer_host(landing_page_url)
    if not ref_host or (own_host and ref_host.removeprefix("www.") == own_host.removeprefix("www.")):
        return "(direct)", "(none)"
    if _in(ref_host, SEARCH_SITES):
        return ref_host, "organic"
    if _in(ref_host, SOCIAL_SITES):
        return ref_host, "social"
    return ref_host, "referral"


def classify(
    utm_source: str | None,
    utm_medium: str | None,
    utm_campaign: str | None = None,
    referrer_url: str | None = None,
    landing_page_url: str | None = None,
) -> Channel:
    source, medium = source_medium(utm_source, utm_medium, referrer_url, landing_page_url)
    name = _channel(source, medium, (utm_campaign or "").strip().lower())
    return Channel(name, CHANNEL_MEDIUM[name], source, CHANNEL_POINTS.get(name, 0))


def _channel(source: str, medium: str, campaign: str) -> str:
    paid = bool(PAID_MEDIUM.match(medium))
    if source == "(direct)" and medium in ("(not set)", "(none)"):
        return "Direct"
    if "cross-network" in campaign:
        return "Cross-network"
    if (_in(source, SHOPPING_SITES) or SHOPPING_CAMPAIGN.match(campaign)) and paid:
        return "Paid Shopping"
    if _in(source, SEARCH_SITES) and paid:
        return "Paid Search"
    if _in(source, SOCIAL_SITES) and paid:
        return "Paid Social"
    if _in(source, VIDEO_SITES) and paid:
        return "Paid Video"
    if medium in DISPLAY_MEDIUMS:
        return "Display"
    if paid:
        return "Paid Other"
    if _in(source, SHOPPING_SITES) or SHOPPING_CAMPAIGN.match(campaign):
        return "Organic Shopping"
    if _in(source, SOCIAL_SITES) or medium in SOCIAL_MEDIUMS:
        return "Organic Social"
    if _in(source, VIDEO_SITES) or re.match(r"^(.*video.*)$", medium):
        return "Organic Video"
    if _in(source, SEARCH_SITES) or medium == "organic":
        return "Organic Search"
    if medium in ("referral", "app", "link"):
        return "Referral"
    if source in EMAIL_VALUES or medium in EMAIL_VALUES:
        return "Email"
    if medium == "affiliate":
        return "Affiliates"
    if medium == "audio":
        return "Audio"
    if source == "sms" or medium == "sms":
        return "SMS"
    if medium.endswith("push") or "mobile" in medium or "notification" in medium:
        return "Mobile Push Notifications"
    return "Unassigned"
