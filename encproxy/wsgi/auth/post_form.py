"""POST Object's form, read from the request: the edge over ``encproxy.s3.form_data``.

:func:`read_form` reads the fields that precede the file (bounded), then makes
``wsgi.input`` the file's data alone: a :class:`~encproxy.wsgi.auth.body.VerifiedBody`
of the file's exact length that checks the form's ``x-amz-checksum-*`` (or
``Content-MD5``) field and the close of the form before it gives up its last
bytes.  The form is kept in the environ (``environ.POST_FORM``) for the layer
that turns it into a PutObject (``encproxy.wsgi.encryption.post``).  Authorizing
it is the authentication middleware's job; this module only reads.
"""
from __future__ import annotations

import io
from typing import Any

from encproxy import checksums, errors, sigv4
from encproxy.s3 import form_data
from encproxy.s3.names import check_key
from encproxy.s3.post_policy import object_key
from encproxy.wsgi import environ as env
from encproxy.wsgi.auth.body import (
    IO_SIZE,
    BodySpec,
    RawInput,
    VerifiedBody,
    verify_empty_body,
)


def read_form(environ: dict[str, Any], io_size: int = IO_SIZE) -> form_data.FormHead:
    """Read the form's head, install the file's data as ``wsgi.input``; S3's errors."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() \
            or not environ.get("CONTENT_LENGTH"):
        raise errors.MissingContentLength()
    try:
        length = int(environ["CONTENT_LENGTH"])
    except ValueError:
        raise errors.InvalidArgument("Invalid Content-Length header.",
                                     ArgumentName="Content-Length") from None
    boundary = form_data.boundary_of(environ.get("CONTENT_TYPE", ""))
    reader = form_data.FormReader(RawInput(environ["wsgi.input"].read, length).read,
                                  boundary, length)
    head = reader.read_head()
    check_key(object_key(head.by_name, head.file.filename))
    digests = {name: value for name, value in head.by_name.items()
               if name.startswith(checksums.CHECKSUM_HEADER_PREFIX)}
    spec = BodySpec(
        content_length=head.file_length, payload_hash=sigv4.UNSIGNED_PAYLOAD,
        decoded_length=head.file_length,
        content_md5=(checksums.parse_content_md5(head.by_name["content-md5"])
                     if "content-md5" in head.by_name else None),
        checksum=checksums.parse_checksum_headers(digests))
    sums: dict[str, str] = environ.setdefault(env.BODY_CHECKSUMS, {})
    data = reader.file_data(head)
    if head.file_length == 0:
        # Nothing will read an empty file: check the form's close and the claims now.
        data.read(1)
        sums.update(verify_empty_body(spec))
        environ["wsgi.input"] = io.BytesIO(b"")
    else:
        def record(checks: dict[str, str]) -> None:
            sums.update(checks)

        environ["wsgi.input"] = VerifiedBody(data.read, spec, io_size=io_size,
                                             on_verified=record)
    environ["wsgi.input_terminated"] = True
    environ[env.POST_FORM] = head
    return head
