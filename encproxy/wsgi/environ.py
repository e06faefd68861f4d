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
# Set (True) by authentication for a request with no credentials at all, once its
# authorizer allowed it (the file store's AnonymousAccess, by its ACLs); ACCESS_KEY is
# then unset.  The file store's authorization is made before the layers below act.
ANONYMOUS = "encproxy.anonymous"
# Set (True) by a backend app that answered CreateBucket 200 for a bucket its caller
# already owned (S3's us-east-1 legacy answer): nothing was created, so the bucket's
# stored configurations stay.
BUCKET_EXISTED = "encproxy.bucket_existed"
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
# Set by the encryption layer on a PutObject: a callable giving, from the stored ETag and
# size once the body is read, the object's facts record fields (FORMAT.md §17), which
# the embedded store keeps in the version's index row and hands up with the entry in a
# listing's page (``LISTING_PAGE``; no record in the internal bucket is then needed).
# S3 backend apps ignore it.
LISTING_FACTS = "encproxy.listing_facts"
# Set by the encryption layer on a listing it relays: a ``listing_page.ListingSlot``, in
# which the embedded store leaves its page unrendered, for the layer to correct and
# render once (an XML round trip saved).  S3 backend apps ignore it.
LISTING_PAGE = "encproxy.listing_page"
# The client sent "Expect: 100-continue" (kept by every sub-request made for it): where
# the backend decides whether it may write, its refusal comes before the client's body.
EXPECTS_CONTINUE = "encproxy.expects_continue"
# Set (True) by the encryption layer on a CopyObject of a version onto itself (same
# key and versionId, metadata directive REPLACE, ``x-amz-copy-source-if-match``) that
# must rewrite that version's user metadata in place (a re-wrapped envelope): the same
# version id, body, ETag and Last-Modified, no new version.  Only the file store can
# (``ObjectStore.replace_user_metadata``); an S3 backend app refuses it with
# NotImplemented rather than copy.  An environ key, never a header: clients cannot set it.
IN_PLACE = "encproxy.in_place"
