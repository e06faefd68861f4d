"""Layer 1: the encproxy object format, pure (stdlib only).

``constants`` fixes the format's numbers, ``errors`` its closed list of decode
errors, ``layout`` the size and range maths, ``envelope`` the user-metadata codec,
``segment`` the multipart framing and ``records`` the AAD, nonce and KDF-label
layouts.  The specification is docs/FORMAT.md.
"""
