"""CORS preflight requests (S3's OPTIONS object), pure.

A browser sends ``OPTIONS`` before a cross-origin request, without credentials
(the Fetch standard forbids them on a preflight), whatever the URL carries, a
presigned URL's signature included.  S3 answers it from the bucket's CORS rules
alone: it is never authenticated, and it reads or writes no object.  What S3
checks before it looks at the rules is here; the rules themselves are the
backend's (the file store's: ``encproxy.s3.cors``; an S3 backend's own).
"""
from __future__ import annotations

from collections.abc import Mapping

from encproxy import errors

#: The request headers a preflight is decided by: all that is sent to an S3 backend.
PREFLIGHT_HEADERS = ("origin", "access-control-request-method",
                     "access-control-request-headers")
#: The response headers of a preflight's answer, relayed from an S3 backend.
CORS_RESPONSE_HEADERS = frozenset({
    "access-control-allow-origin", "access-control-allow-methods",
    "access-control-allow-headers", "access-control-expose-headers",
    "access-control-max-age", "access-control-allow-credentials", "vary",
})
_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})


def check_preflight(headers: Mapping[str, str]) -> None:
    """BadRequest for a preflight S3 cannot evaluate: no ``Origin``, or no
    ``Access-Control-Request-Method`` naming a method S3 has.  ``headers`` has
    lower-case names."""
    if not headers.get("origin"):
        raise errors.BadRequest()
    method = headers.get("access-control-request-method")
    if method not in _METHODS:
        raise errors.BadRequest(f"Invalid Access-Control-Request-Method: {method or 'null'}")


def no_cors_configuration(method: str) -> errors.S3Error:
    """S3's answer to a valid preflight (for ``method``) on a bucket without a CORS
    configuration (Method and ResourceType as LocalStack records AWS's)."""
    return errors.AccessForbidden("CORSResponse: CORS is not enabled for this bucket.",
                                  Method=method, ResourceType="BUCKET")
