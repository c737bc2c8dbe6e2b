"""`certgate explain` and `GET|POST /api/v1/explain`: why a device is accepted or refused.

The decision is radius.verdict (OpenSSL's chain verification against the TLS trust store,
then the callable the RADIUS server runs); this package only gathers its inputs (PKI
certificates, the revocation and inventory lookups) and presents the result.
"""
