"""The encryption layer: ``middleware.EncryptionMiddleware`` and the helpers it dispatches to.

Start at middleware.py (the operation table) and context.py (what every helper
receives); docs/ARCHITECTURE.md draws the package.
"""
