"""The pure parts of staff entry: CSV parsing and column mapping, row validation, follow-up times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadflow.errors import ApiError
from leadflow.leads import entry
from leadflow.web.lead import follow_up_moment


def test_parse_sniffs_the_separator_and_skips_blank_lines() -> None:
    file = entry.CsvFile.parse("\ufeffE-Mail;Vorname;Surname\r\n\r\na@example.org;Ann;One\r\n".encode())
    assert file.header == ["E-Mail", "Vorname", "Surname"] and file.rows == [["a@example.org", "Ann", "One"]]
    assert file.guess_mapping() == {"email": 0, "last_name": 2}
    tabbed = entry.CsvFile.parse(b"First name\tLast name\tPhone number\nA\tB\t+14155550100\n")
    assert tabbed.guess_mapping() == {"first_name": 0, "last_name": 1, "phone": 2}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"only,a,header\n", "header row and at least one lead"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (b"a\n" + b"x\n" * (entry.MAX_IMPORT_ROWS + 1), "At most"),
    ],
)
def test_parse_refuses(content: bytes, message: str) -> None:
    with pytest.raises(entry.EntryRefused) as refused:
        entry.CsvFile.parse(content)
    assert message in refused.value.errors["file"]


def test_the_same_bytes_have_the_same_digest() -> None:
    content = b"email\na@example.org\n"
    assert entry.CsvFile.parse(content).digest == entry.CsvFile.parse(content).digest
    assert entry.CsvFile.parse(content + b"b@example.org\n").digest != entry.CsvFile.parse(content).digest


def test_validation_names_every_field_in_error() -> None:
    with pytest.raises(entry.EntryRefused) as refused:
        entry.validate({"first_name": "", "country": "Germany"}, "c", phone_region="US", form_type="t")
    assert set(refused.value.errors) == {"first_name", "last_name", "email", "country"}
    assert refused.value.errors["first_name"] == "Required."
    phone_only = entry.validate(
        {"first_name": "A", "last_name": "B", "phone": "(415) 555-0100", "consent": "Yes"},
        "c",
        phone_region="US",
        form_type="t",
    )
    assert phone_only.phone_only and phone_only.body.contact.phone == "+14155550100"
    assert phone_only.body.form_metadata.consent_given


def test_mapping_of_the_form_ignores_unknown_fields_and_columns() -> None:
    posted = [("map_email", "1"), ("map_phone", ""), ("map_nope", "0"), ("map_company", "9"), ("x", "1")]
    assert entry.mapping_of(posted, 3) == {"email": 1}


def test_follow_up_moment_is_the_browsers_local_time_in_utc() -> None:
    assert follow_up_moment("2030-01-02T09:30", "-60") == datetime(2030, 1, 2, 8, 30, tzinfo=UTC)
    assert follow_up_moment("2030-01-02T09:30", "") == datetime(2030, 1, 2, 9, 30, tzinfo=UTC)
    assert follow_up_moment("", "0") is None
    for bad in (("tomorrow", "0"), ("2030-01-02T09:30", "5000"), ("2030-01-02T09:30+01:00", "0")):
        with pytest.raises(ApiError):
            follow_up_moment(*bad)
