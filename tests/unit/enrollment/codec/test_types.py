"""Wire enums, OID registration and error types."""

from __future__ import annotations

from asn1crypto import cms

from enrollment import scep_types
from enrollment.scep_types import (
    FailInfo,
    KeyTransport,
    MessageType,
    PKIStatus,
    ScepError,
    ScepString,
    UndecodableRequest,
)


class TestEnums:
    def test_message_types(self) -> None:
        assert MessageType.PKCSReq == 19
        assert MessageType.RenewalReq == 17
        assert MessageType.CertPoll == 20
        assert MessageType.GetCert == 21
        assert MessageType.GetCRL == 22
        assert MessageType.CertRep == 3
        assert MessageType(19).name == "PKCSReq"

    def test_status_and_fail_info(self) -> None:
        assert [int(s) for s in PKIStatus] == [0, 2, 3]
        assert [f.name for f in FailInfo] == [
            "badAlg",
            "badMessageCheck",
            "badRequest",
            "badTime",
            "badCertId",
        ]

    def test_oaep_hash(self) -> None:
        assert KeyTransport.RSA_PKCS1V15.oaep_hash is None
        assert KeyTransport.RSA_OAEP_SHA256.oaep_hash is scep_types.DigestAlgorithm.SHA256


class TestRegistration:
    def test_attributes_parse_typed(self) -> None:
        attr = cms.CMSAttribute(
            {
                "type": "scep_transaction_id",
                "values": [ScepString(name="printable_string", value="abc")],
            }
        )
        der = attr.dump()
        assert der.startswith(bytes.fromhex("3013060a6086480186f84501090731"))
        again = cms.CMSAttribute.load(der)
        assert again["type"].dotted == scep_types.OID_TRANSACTION_ID
        assert again["values"][0].native == "abc"

    def test_utf8_transaction_id_tolerated(self) -> None:
        attr = cms.CMSAttribute(
            {"type": "scep_transaction_id", "values": [ScepString(name="utf8_string", value="ü")]}
        )
        again = cms.CMSAttribute.load(attr.dump())
        assert again["values"][0].name == "utf8_string"
        assert again["values"][0].native == "ü"

    def test_registration_is_idempotent(self) -> None:
        scep_types.register_attributes()
        scep_types.register_attributes()
        assert cms.CMSAttributeType.unmap("scep_sender_nonce") == scep_types.OID_SENDER_NONCE


class TestErrors:
    def test_scep_error_carries_fail_info_and_request(self) -> None:
        err = ScepError(FailInfo.badAlg, "DES refused", request="req")
        assert err.fail_info is FailInfo.badAlg
        assert err.reason == "DES refused"
        assert err.request == "req"
        assert "badAlg" in str(err)

    def test_undecodable(self) -> None:
        err = UndecodableRequest("not CMS")
        assert err.reason == "not CMS"
