"""Master-key custody: one interface over every key provider (docs/KEYS.md).

* :mod:`encproxy.keys.provider` -- the interface (``KeyProvider``), ``KeyInfo``, ``DataKey``;
* :mod:`encproxy.keys.blob` -- the self-describing wrapped-key blob and the canonical
  encoding of an encryption context (pure);
* :mod:`encproxy.keys.keyid` -- key-id parsing and normalization (pure);
* :mod:`encproxy.keys.cache` -- the opt-in, bounded cache of unwrapped data keys;
* :mod:`encproxy.keys.bucket_keys` -- SSE-KMS bucket keys: wrapping data keys under them,
  and each process's bounded, time-limited caches of them;
* :mod:`encproxy.keys.local` -- the local keyring (the only provider importing ``cryptography``);
* :mod:`encproxy.keys.pkcs11`, :mod:`encproxy.keys.kmip`, :mod:`encproxy.keys.awskms` --
  providers that talk to an HSM or a server (layer 3); their libraries are optional
  and imported lazily;
* :mod:`encproxy.keys.factory` -- a provider from ``[keys]`` settings, and start-up checks;
* :mod:`encproxy.keys.commands` -- ``encproxy keys create|rotate|list|ensure-default``.

Importing this package imports nothing else: the pure modules stay pure.
"""
