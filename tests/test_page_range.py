"""page_range per SPEC §2, including every malformed form."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.documents.page_range import format_pages, parse_page_range
from backend.errors import InvalidRequest


@pytest.mark.parametrize(
    ("spec", "num_pages", "expected"),
    [
        (None, 3, [1, 2, 3]),
        ("", 2, [1, 2]),
        ("1-3", 5, [1, 2, 3]),
        ("1,3,5", 5, [1, 3, 5]),
        ("2-", 4, [2, 3, 4]),
        ("1-2,5", 6, [1, 2, 5]),
        ("1-3", 2, [1, 2]),  # runs past the end: stops at the last page
        (" 2 - 3 , 1 ", 3, [1, 2, 3]),
        ("3,1,3", 3, [1, 3]),
    ],
)
def test_valid_ranges(spec, num_pages, expected):
    assert parse_page_range(spec, num_pages) == expected


@pytest.mark.parametrize(
    "spec",
    ["0", "0-2", "3-1", "a", "1-2-3", "1,,2", "-3", "1.5", "5-", "4", "1;2", ",", "--", "9" * 300],
)
def test_invalid_ranges_are_invalid_request(spec):
    with pytest.raises(InvalidRequest):
        parse_page_range(spec, 3)


@given(st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=30))
def test_format_round_trips(pages):
    assert parse_page_range(format_pages(pages), 60) == sorted(set(pages))
