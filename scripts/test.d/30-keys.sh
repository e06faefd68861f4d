# Sourced by scripts/test: what the key-provider contract tests (tests/keys) need.
# - SoftHSM2 (Debian softhsm2): the PKCS#11 token; the tests create a fresh token in a
#   temporary directory (SOFTHSM2_CONF) and never touch the system's.
# - PyKMIP and moto come with `pip install -e .[test]` (scripts/test's ensure_venv); the
#   tests start them on 127.0.0.1 (scripts/services/pykmip, moto_server) and stop them.
ensure_apt_packages softhsm2
