"""Layer 2: the only code that imports ``cryptography``.

``suites`` holds the two record ciphers, ``keys`` the data keys, key schedule and
envelope, ``stream`` the batched chunk engine, and ``single`` / ``multipart`` the
encryptors and decryptors of the two kinds of object (docs/FORMAT.md).
"""
