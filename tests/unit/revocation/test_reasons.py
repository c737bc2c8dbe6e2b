from __future__ import annotations

import pytest
from cryptography import x509

from revocation.reasons import (
    REASON_CODES,
    REVOCATION_REASONS,
    UnknownReason,
    canonical_name,
    from_code,
    parse_reason,
    parse_revocation_reason,
    reason_code,
    to_flag,
)

R = x509.ReasonFlags


class TestParseReason:
    @pytest.mark.parametrize(
        ("text", "flag"),
        [
            ("unspecified", R.unspecified),
            ("keyCompromise", R.key_compromise),
            ("keycompromise", R.key_compromise),
            ("KEY_COMPROMISE", R.key_compromise),
            ("key-compromise", R.key_compromise),
            (" key_compromise ", R.key_compromise),
            ("cACompromise", R.ca_compromise),
            ("ca_compromise", R.ca_compromise),
            ("affiliation_changed", R.affiliation_changed),
            ("Superseded", R.superseded),
            ("cessation_of_operation", R.cessation_of_operation),
            ("certificateHold", R.certificate_hold),
            ("privilegeWithdrawn", R.privilege_withdrawn),
            ("aa_compromise", R.aa_compromise),
            ("AACOMPROMISE", R.aa_compromise),
        ],
    )
    def test_accepts_rfc_and_snake_case(self, text, flag):
        assert parse_reason(text) is flag

    def test_every_flag_round_trips_by_its_value(self):
        for flag in R:
            assert parse_reason(flag.value, allow_remove_from_crl=True) is flag

    def test_remove_from_crl_only_on_request(self):
        assert parse_reason("remove_from_crl", allow_remove_from_crl=True) is R.remove_from_crl
        with pytest.raises(UnknownReason, match="valid reasons") as e:
            parse_reason("removeFromCRL")
        assert "removeFromCRL" not in e.value.valid and len(e.value.valid) == 9

    def test_unknown_lists_valid_names(self):
        with pytest.raises(UnknownReason, match="valid reasons: unspecified, keyCompromise") as e:
            parse_reason("stolen")
        assert isinstance(e.value, ValueError)
        assert "aACompromise" in e.value.valid and "removeFromCRL" not in e.value.valid

    def test_wrong_type(self):
        with pytest.raises(TypeError):
            parse_reason(1)  # type: ignore[arg-type]

    def test_revocation_reason_rejects_remove_from_crl(self):
        with pytest.raises(UnknownReason, match="removeFromCRL") as e:
            parse_revocation_reason("removeFromCRL")
        assert "removeFromCRL" not in e.value.valid
        assert parse_revocation_reason("superseded") is R.superseded


class TestConversions:
    def test_codes_match_rfc5280(self):
        assert [reason_code(f) for f in REVOCATION_REASONS] == [0, 1, 2, 3, 4, 5, 6, 9, 10]
        assert reason_code(R.remove_from_crl) == 8
        assert set(REASON_CODES) == set(R)

    def test_from_code(self):
        assert from_code(1) is R.key_compromise
        with pytest.raises(ValueError, match="code 7"):
            from_code(7)
        with pytest.raises(TypeError):
            from_code(True)

    def test_to_flag(self):
        assert to_flag(None) is R.unspecified
        assert to_flag("key_compromise") is R.key_compromise
        assert to_flag(R.superseded) is R.superseded
        with pytest.raises(ValueError):
            to_flag(R.remove_from_crl)

    def test_canonical_name(self):
        assert canonical_name("cessation_of_operation") == "cessationOfOperation"
        assert canonical_name(R.ca_compromise) == "cACompromise"
