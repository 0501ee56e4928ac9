"""ovl.require parsing and the replay state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.core.errors import BadInput, OvlError
from ovl.trust.policy import Policy, Require, parse_policy
from ovl.trust.replay import ReplayState


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("signed", Policy(Require.SIGNED)),
        ("encrypted", Policy(Require.ENCRYPTED)),
        ("none", Policy(Require.NONE)),
        ("signed,allow-rollback", Policy(Require.SIGNED, allow_rollback=True)),
        ("none,allow-legacy,allow-rollback", Policy(Require.NONE, True, True)),
    ],
)
def test_policy_words_parse(text: str, expected: Policy) -> None:
    assert parse_policy(text) == expected


def test_encrypted_implies_signed() -> None:
    policy = parse_policy("encrypted")
    assert policy.needs_signature and policy.needs_encryption
    assert not parse_policy("none").needs_signature


@pytest.mark.parametrize("text", ["", "signd", "signed,rollback", "allow-legacy,signed"])
def test_unknown_policy_words_are_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match=r"ovl\.require"):
        parse_policy(text)


@given(st.sampled_from(list(Require)), st.booleans(), st.booleans())
def test_policy_text_round_trips(level: Require, rollback: bool, legacy: bool) -> None:
    policy = Policy(level, rollback, legacy)
    assert parse_policy(str(policy)) == policy


def test_replay_state_keeps_the_highest_serial_per_bundle(tmp_path: Path) -> None:
    path = tmp_path / "state" / "replay.json"
    state = ReplayState(path)
    state.accept("fleet", 3)
    state.accept("fleet", 2)
    state.accept("other", 1)
    again = ReplayState(path)
    assert (again.highest("fleet"), again.highest("other"), again.highest("new")) == (3, 1, None)
    again.check("fleet", 3, "b")
    with pytest.raises(OvlError, match="serial 2 of bundle 'fleet' is older than the last"):
        again.check("fleet", 2, "b")
    assert json.loads(path.read_text()) == {"version": 1, "serials": {"fleet": 3, "other": 1}}


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 2, "serials": {}}', '{"version": 1}'])
def test_damaged_replay_state_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "replay.json"
    path.write_text(text)
    with pytest.raises(OvlError, match="replay state"):
        ReplayState(path)
