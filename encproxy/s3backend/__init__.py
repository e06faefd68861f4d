"""The S3 backend: forwarding plain S3 requests to any S3 server, re-signed.

``forwarding`` holds the pure rules (which operations go through, which
headers and query parameters, how paths are encoded); ``client`` is the HTTP
client that reaches the backend, the only code in encproxy that imports
``requests``.  The WSGI app on top is ``encproxy.wsgi.apps.s3backend``.
"""
