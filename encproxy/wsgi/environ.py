"""Names of the WSGI environ keys that encproxy's layers share.

The outermost layer (``encproxy.wsgi.edge.gateway``) resolves addressing once and
stores the result here, so that every inner layer (authentication, encryption,
backend apps) sees the same bucket, key and raw request target.
"""
from __future__ import annotations

REQUEST_ID = "encproxy.request_id"
BUCKET = "encproxy.bucket"            # str | None, validated only for shape
KEY = "encproxy.key"                  # str | None, decoded UTF-8 object key
RAW_PATH = "encproxy.raw_path"        # the path exactly as the client sent it
RAW_QUERY = "encproxy.raw_query"      # the query string exactly as sent
ACCESS_KEY = "encproxy.access_key"    # set by authentication: who is calling
REQUEST = "encproxy.request"          # the S3Request parsed from this environ (request.py)
BODY_CHECKSUMS = "encproxy.body_checksums"  # filled by the verified body at EOF
# POST Object: the form before its file (encproxy.s3.form_data.FormHead), read and
# authorized by the authentication layer; wsgi.input is then the file's data.
POST_FORM = "encproxy.post_form"
# Set by the encryption layer on the PUT of a sealed single-part object: a callable
# giving, once the body is read, the 16 bytes the embedded store keeps as the ETag
# instead of the ciphertext's MD5 (ObjectEncryptor.fingerprint).  S3 backends make
# their own ETags and ignore it.
STORED_DIGEST = "encproxy.stored_digest"
