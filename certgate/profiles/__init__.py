"""Device profiles: pure renderers from plain values to the text a supplicant reads.

No I/O and nothing of the shells here: certgate/commands/profile.py reads the config and
the certificate, then calls these with paths, names and versions; the tests feed the output
to real supplicants (eapol_test, wpa_supplicant on the wired NAS path, nmcli --offline).
"""
