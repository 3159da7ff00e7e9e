"""Decoding and encoding of stream messages (no broker)."""

from __future__ import annotations

import json

import pytest

from scoring import synthetic
from streaming.events import decode_event, encode_event
from streaming.producer import MALFORMED, events


@pytest.fixture
def good_event():
    row = synthetic.generate(1, seed=3, with_target=False).iloc[0].to_dict()
    event_id = row.pop(synthetic.ID_COLUMN)
    return event_id, row


def test_a_good_event_round_trips_exactly(bundle, good_event):
    event_id, row = good_event
    decoded = decode_event(encode_event(event_id, row), bundle.schema)
    assert decoded.error is None and decoded.event_id == event_id and decoded.features == row


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "empty message"),
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
    ],
)
def test_undecodable_payloads_are_named(bundle, payload, reason):
    decoded = decode_event(payload, bundle.schema)
    assert decoded.features is None and reason in decoded.error


def test_every_shape_problem_of_one_event_is_reported(bundle, good_event):
    _, row = good_event
    event = {**row, "amount": "twelve", "channel": 3, "hour_of_day": True, "surprise": 1}
    del event["country_risk"]
    decoded = decode_event(json.dumps(event).encode(), bundle.schema)
    assert decoded.error == (
        "event_id: missing or not a string/integer; missing fields: country_risk; unexpected fields: surprise; "
        'amount: expected a number, got string "twelve"; hour_of_day: expected a number, got boolean true; '
        "channel: expected a string, got int 3"
    )


@pytest.mark.parametrize("literal", [float("nan"), float("inf")])
def test_nan_and_infinity_literals_are_refused_but_null_is_left_to_the_core(bundle, good_event, literal):
    event_id, row = good_event
    nan = decode_event(json.dumps({"event_id": event_id, **row, "amount": literal}).encode(), bundle.schema)
    assert nan.error.startswith("invalid JSON")
    null = decode_event(json.dumps({"event_id": event_id, **row, "amount": None}).encode(), bundle.schema)
    assert null.error is None and null.features["amount"] is None


def test_demo_producer_spoils_events_of_every_kind_deterministically():
    first = list(events(400, seed=9, malformed_share=0.2))
    assert first == list(events(400, seed=9, malformed_share=0.2))
    kinds = {kind for _, _, kind in first if kind}
    assert kinds == set(MALFORMED)
