"""A RADIUS/EAP-TLS client (`certgate test-auth`): the peer side, kept apart from the server.

``supplicant`` is the EAP-TLS peer (pyOpenSSL over memory BIOs), ``exchange`` plays the NAS
(Access-Requests, reply checks, MPPE key verification), both pure (bytes in, bytes out, time
passed in); ``udp`` is the blocking socket shell and ``report`` renders the outcome.
"""
