"""Types.config rules: parsing and the defined semantics (sans-IO)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hathd.q4d.rules import (
    Conditional,
    RuleField,
    RulesError,
    classify,
    destination,
    event_fields,
    parse_rules,
)

SHIPPED = """
# Types.config as shipped with Queue4Download (column spacing normalised)
LABEL   IS       sonarr  T   ""
TRACKER CONTAINS hatc    "A" ""
TRACKER CONTAINS tackove B   ""
TRACKER CONTAINS emp     V   ""
TRACKER CONTAINS ageddon B   ""
KEY     CONTAINS eopardy J   T
KEY     CONTAINS 2024    N   M
"""


def test_shipped_file_parses_with_quotes_stripped() -> None:
    rules = parse_rules(SHIPPED)
    assert len(rules) == 7
    assert rules[0].field is RuleField.LABEL
    assert rules[0].conditional is Conditional.IS
    assert rules[0].assigned == ""
    assert rules[1].code == "A"  # the original kept the quotes: code '"A"' -> ERR folder
    assert rules[5].assigned == "T"
    assert rules[5].line == 8


def test_assigned_is_a_real_second_tier_guard() -> None:
    rules = parse_rules(SHIPPED)
    # No code yet: the KEY 2024 rule is guarded by M, so it does not fire (the original
    # script fired it anyway: its guard was always true).
    assert classify(rules, event_fields("/f/Some.Movie.2024", "h"), default="V") == "V"
    assert classify(rules, event_fields("/f/Some.Movie.2024", "h"), code="M") == "N"
    assert classify(rules, event_fields("/f/Jeopardy.S40", "h"), code="M") == "M"
    assert classify(rules, event_fields("/f/Jeopardy.S40", "h"), code="T") == "J"


def test_last_match_wins_and_tier_two_sees_tier_one() -> None:
    rules = parse_rules(
        """
        LABEL IS sonarr T
        TRACKER CONTAINS hatc A
        KEY CONTAINS eopardy J T
        """
    )
    fields = event_fields("/f/Jeopardy.S40", "h", label="sonarr", tracker="x.hatc.org")
    assert classify(rules, fields) == "A"  # T then A; the J rule needs T
    fields = event_fields("/f/Jeopardy.S40", "h", label="sonarr")
    assert classify(rules, fields) == "J"  # T, then J (guarded by T)


def test_is_is_a_glob_not_is_negated_glob_contains_is_substring() -> None:
    rules = parse_rules(
        """
        KEY IS *.S??E?? T
        PATH NOT /tv/* X T
        KEY CONTAINS [x] B
        """
    )
    assert classify(rules, event_fields("/tv/Show.S01E02", "h")) == "T"
    assert classify(rules, event_fields("/other/Show.S01E02", "h")) == "X"
    assert classify(rules, event_fields("/m/Film [x] (2020)", "h")) == "B"  # literal brackets
    assert classify(rules, event_fields("/m/Film x", "h"), default="V") == "V"


def test_matching_is_case_sensitive_like_bash() -> None:
    rules = parse_rules("KEY CONTAINS 2024 N")
    assert classify(rules, event_fields("/m/a 2024", "h")) == "N"
    rules = parse_rules("KEY IS movie* N")
    assert classify(rules, event_fields("/m/Movie", "h"), default="V") == "V"


def test_payload_code_is_kept_without_matching_rule() -> None:
    assert classify([], event_fields("/a", "h"), code="M", default="V") == "M"
    assert classify([], event_fields("/a", "h"), code="", default="V") == "V"


def test_quoted_values_with_spaces_and_comments() -> None:
    rules = parse_rules('KEY IS "My Show *" T  # trailing comment\n# only a comment\n')
    assert len(rules) == 1
    assert rules[0].value == "My Show *"
    assert classify(rules, event_fields("/x/My Show S01", "h")) == "T"


def test_keywords_are_case_insensitive() -> None:
    (rule,) = parse_rules("key contains abc Z")
    assert rule.field is RuleField.KEY
    assert rule.conditional is Conditional.CONTAINS


def test_errors_list_every_bad_line() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules('KEY IS\nFOO IS a B\nKEY LIKE a B\nKEY IS "open B\nKEY IS a ""\nKEY IS a B')
    lines = [line for line, _msg in info.value.problems]
    assert lines == [1, 2, 3, 4, 5]
    assert "rules line 2: unknown FIELD 'FOO'" in str(info.value)


def test_destination_maps_codes_and_sends_unknown_to_err(tmp_path: Path) -> None:
    type_map = {"M": "/media/Movies", "T": "TV", "ERR": "/media/Other"}
    assert destination("M", type_map, tmp_path) == ("M", Path("/media/Movies"))
    assert destination("T", type_map, tmp_path) == ("T", tmp_path / "TV")
    assert destination("Q", type_map, tmp_path) == ("ERR", Path("/media/Other"))
    assert destination("Q", {}, tmp_path) == ("ERR", tmp_path / "ERR")
