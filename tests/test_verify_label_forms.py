"""Labels' nested argument forms: the checker accepts the label's own canonical call and
still rejects a wrong nested value; forcing a label decodes exactly one level of maps."""

from __future__ import annotations

from tooldojo.agents.guidance import first_value
from tooldojo.verify._match import check_call, label_form_match, shape_from_parameters

# A body the checker's shape reads as untyped (``str``): a $ref it does not follow.
BODY_TOOL = shape_from_parameters(
    "update",
    {
        "type": "object",
        "properties": {"body": {"$ref": "#/$defs/Body"}},
        "$defs": {"Body": {"type": "object", "properties": {"after": {"type": "integer"}}}},
    },
)
LABEL = {"body": [{"after": [118], "id": [", "], "note": [""]}]}


def test_the_canonical_call_of_a_nested_label_passes_and_a_wrong_value_fails():
    assert check_call(BODY_TOOL, "update", {"body": {"after": 118, "id": ", "}}, LABEL) is None
    wrong = check_call(BODY_TOOL, "update", {"body": {"after": 119, "id": ", "}}, LABEL)
    assert wrong is not None and wrong.error_type.startswith("value_error")
    extra = check_call(BODY_TOOL, "update", {"body": {"after": 118, "id": ", ", "x": 1}}, LABEL)
    assert extra is not None
    missing = check_call(BODY_TOOL, "update", {"body": {"after": 118}}, LABEL)
    assert missing is not None  # "id" may not be left out ("" is not among its values)


def test_label_forms_literal_dicts_lists_of_maps_and_no_standardizing_of_scalars():
    literal = {"team_member_id": {}, "hashable": {"updated_at": "2023-01-01"}}
    assert label_form_match(dict(literal), [literal])
    assert not label_form_match({"team_member_id": {}}, [literal])
    items = [[{"Name": ["Maria Lopez"], "Attributes": [""]}]]
    assert label_form_match([{"Name": "Maria Lopez"}], items)
    assert not label_form_match([{"Name": "Priya Nair"}], items)
    assert not label_form_match([{"Name": "Maria Lopez"}, {"Name": "Maria Lopez"}], items)
    # Scalars stay with BFCL's own comparison (it does not standardize "DONTCARE ." here).
    assert not label_form_match("DONTCARE .", ["", "dontcare"])


def test_forcing_a_label_decodes_one_level_of_maps_and_keeps_deeper_lists_whole():
    possible = [{"assets": [[{"assetReturns": [56.2, 56.05]}]], "note": [""]}]
    assert first_value(possible) == (True, {"assets": [{"assetReturns": [56.2, 56.05]}]})
    assert first_value([[{"Name": ["Maria Lopez"], "Attributes": [""]}]]) == (
        True,
        [{"Name": "Maria Lopez"}],
    )
    assert first_value(["", 3]) == (False, None)
