"""The one error hierarchy of encproxy.

Every error a client can see is an :class:`S3Error` leaf that carries its S3
error code and HTTP status as class attributes, so that the WSGI edge can render
any of them the same way (``encproxy.wsgi.responses.error_response``).  Messages
are written for the client: they never contain key material, secrets or
signatures.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

from typing import ClassVar


class EncproxyError(Exception):
    """Root of every error encproxy raises on purpose."""


class ConfigError(EncproxyError):
    """A configuration problem; stops start-up with exit status 2."""

    def __init__(self, section: str, option: str | None, problem: str) -> None:
        self.section = section
        self.option = option
        self.problem = problem
        where = f"[{section}]" + (f" {option}" if option else "")
        super().__init__(f"config error: {where}: {problem}")


class S3Error(EncproxyError):
    """An error with an S3 error code, rendered as an S3 XML error body."""

    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None, **fields: str) -> None:
        self.message = message or self.default_message
        # Extra elements of the XML body (BucketName, Key, ArgumentName, ...).
        self.fields = dict(fields)
        self.headers: dict[str, str] = {}
        super().__init__(f"{self.code}: {self.message}")


def _leaf(name: str, status: int, message: str, code: str | None = None) -> type[S3Error]:
    cls = type(name, (S3Error,), {
        "code": code or name, "status": status, "default_message": message,
        "__doc__": f"S3 error {code or name} ({status}).",
    })
    return cls


# -- authentication and request shape -------------------------------------------------
AccessDenied = _leaf("AccessDenied", 403, "Access Denied")
InvalidAccessKeyId = _leaf(
    "InvalidAccessKeyId", 403,
    "The AWS Access Key Id you provided does not exist in our records.")
SignatureDoesNotMatch = _leaf(
    "SignatureDoesNotMatch", 403,
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method.")
RequestTimeTooSkewed = _leaf(
    "RequestTimeTooSkewed", 403,
    "The difference between the request time and the current time is too large.")
AuthorizationHeaderMalformed = _leaf(
    "AuthorizationHeaderMalformed", 400, "The authorization header is malformed.")
AuthorizationQueryParametersError = _leaf(
    "AuthorizationQueryParametersError", 400,
    "Query-string authentication parameters are malformed.")
XAmzContentSHA256Mismatch = _leaf(
    "XAmzContentSHA256Mismatch", 400,
    "The provided 'x-amz-content-sha256' header does not match what was computed.")
BadDigest = _leaf("BadDigest", 400,
                  "The Content-MD5 or checksum you specified did not match what we received.")
InvalidDigest = _leaf("InvalidDigest", 400, "The Content-MD5 or checksum you specified is not valid.")
InvalidRequest = _leaf("InvalidRequest", 400, "Invalid Request")
InvalidArgument = _leaf("InvalidArgument", 400, "Invalid Argument")
InvalidURI = _leaf("InvalidURI", 400, "Couldn't parse the specified URI.")
MalformedXML = _leaf(
    "MalformedXML", 400,
    "The XML you provided was not well-formed or did not validate against our published schema.")
IncompleteBody = _leaf(
    "IncompleteBody", 400,
    "You did not provide the number of bytes specified by the Content-Length HTTP header.")
MissingContentLength = _leaf("MissingContentLength", 411,
                             "You must provide the Content-Length HTTP header.")
RequestTimeout = _leaf(
    "RequestTimeout", 400,
    "Your socket connection to the server was not read from or written to within the "
    "timeout period.")
EntityTooLarge = _leaf("EntityTooLarge", 400,
                       "Your proposed upload exceeds the maximum allowed object size.")
KeyTooLongError = _leaf("KeyTooLongError", 400, "Your key is too long.")
MetadataTooLarge = _leaf("MetadataTooLarge", 400,
                         "Your metadata headers exceed the maximum allowed metadata size.")
MethodNotAllowed = _leaf("MethodNotAllowed", 405,
                         "The specified method is not allowed against this resource.")
NotImplementedError_ = _leaf(
    "NotImplemented", 501,
    "A header or operation you provided implies functionality that is not implemented.",
    code="NotImplemented")
InvalidStorageClass = _leaf("InvalidStorageClass", 400,
                            "The storage class you specified is not valid.")

InvalidEncryptionAlgorithmError = _leaf(
    "InvalidEncryptionAlgorithmError", 400,
    "The Encryption request you specified is not valid. Supported value: AES256.")

# -- buckets -------------------------------------------------------------------------
ServerSideEncryptionConfigurationNotFoundError = _leaf(
    "ServerSideEncryptionConfigurationNotFoundError", 404,
    "The server side encryption configuration was not found")
MaxMessageLengthExceeded = _leaf("MaxMessageLengthExceeded", 400, "Your request was too big.")
InvalidBucketName = _leaf("InvalidBucketName", 400, "The specified bucket is not valid.")
NoSuchBucket = _leaf("NoSuchBucket", 404, "The specified bucket does not exist")
BucketAlreadyOwnedByYou = _leaf(
    "BucketAlreadyOwnedByYou", 409,
    "Your previous request to create the named bucket succeeded and you already own it.")
BucketNotEmpty = _leaf("BucketNotEmpty", 409,
                       "The bucket you tried to delete is not empty")
IllegalLocationConstraintException = _leaf(
    "IllegalLocationConstraintException", 400,
    "The specified location-constraint is not valid.")

# -- objects -------------------------------------------------------------------------
NoSuchKey = _leaf("NoSuchKey", 404, "The specified key does not exist.")
InvalidRange = _leaf("InvalidRange", 416, "The requested range is not satisfiable")
InvalidPartNumber = _leaf("InvalidPartNumber", 416, "The requested partnumber is not satisfiable")
NoSuchVersion = _leaf("NoSuchVersion", 404,
                      "The specified version does not exist.")
PreconditionFailed = _leaf("PreconditionFailed", 412,
                           "At least one of the pre-conditions you specified did not hold")

# -- multipart -----------------------------------------------------------------------
NoSuchUpload = _leaf(
    "NoSuchUpload", 404,
    "The specified multipart upload does not exist. The upload ID might be invalid, or "
    "the multipart upload might have been aborted or completed.")
InvalidPart = _leaf(
    "InvalidPart", 400,
    "One or more of the specified parts could not be found. The part might not have been "
    "uploaded, or the specified entity tag might not have matched the part's entity tag.")
InvalidPartOrder = _leaf(
    "InvalidPartOrder", 400,
    "The list of parts was not in ascending order. Parts must be ordered by part number.")
EntityTooSmall = _leaf(
    "EntityTooSmall", 400,
    "Your proposed upload is smaller than the minimum allowed object size.")

# -- service -------------------------------------------------------------------------
InternalError = _leaf("InternalError", 500,
                      "We encountered an internal error. Please try again.")
ServiceUnavailable = _leaf("ServiceUnavailable", 503,
                           "Please reduce your request rate.")
SlowDown = _leaf("SlowDown", 503, "Please reduce your request rate.")

# -- key providers (docs/KEYS.md §5): the codes S3 answers for SSE-KMS ---------------
KMSNotFound = _leaf("KMSNotFound", 400, "The specified KMS key does not exist.",
                    code="KMS.NotFoundException")
KMSDisabled = _leaf("KMSDisabled", 400, "The specified KMS key is disabled.",
                    code="KMS.DisabledException")
KMSInvalidState = _leaf("KMSInvalidState", 400,
                        "The specified KMS key is not in a state that allows this operation.",
                        code="KMS.KMSInvalidStateException")
KeyProviderUnavailable = _leaf(
    "KeyProviderUnavailable", 503,
    "The key management service is unavailable. Please try again.", code="ServiceUnavailable")


class NotModified(S3Error):
    """Not an error to S3 clients, but it ends a request the same way: 304, no body."""

    code = "NotModified"
    status = 304
    default_message = "Not Modified"


class IntegrityError(S3Error):
    """Stored ciphertext or its envelope failed authentication.

    The client sees a 500 InternalError (AWS answers a corrupt object the same
    way); the server log names the object and the precise reason, which is the
    subclass (the closed list of decode errors in docs/FORMAT.md).
    """

    code = "InternalError"
    status = 500
    default_message = "The object failed an integrity check and cannot be returned."


class KeyUnwrapFailed(IntegrityError):
    """A wrapped data key did not unwrap: wrong context, tampered or foreign blob.

    The client sees 500 InternalError, like any integrity failure; ``reason``
    names the cause for the server log (docs/KEYS.md §5).
    """

    default_message = "The object's wrapped data key failed authentication."

    def __init__(self, reason: str = "authentication", message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message)


# -- errors an S3 backend answered ---------------------------------------------------
_RELAYED: dict[tuple[str, int], type[S3Error]] = {}
_MAX_RELAYED_CLASSES = 256


def relayed(code: str, status: int, message: str | None = None, **fields: str) -> S3Error:
    """The error an S3 backend answered, to be rendered as encproxy's own.

    The leaf of that code is used when its status matches; any other code and
    status get a leaf of their own (made once), so that the client sees exactly
    the code and status the backend sent.
    """
    if not _RELAYED:
        for value in list(globals().values()):
            if isinstance(value, type) and issubclass(value, S3Error) and \
                    value is not S3Error and not issubclass(value, IntegrityError):
                _RELAYED.setdefault((value.code, value.status), value)
    cls = _RELAYED.get((code, status))
    if cls is None:
        cls = _leaf("Relayed" + code, status, message or code, code=code)
        if len(_RELAYED) < _MAX_RELAYED_CLASSES:
            _RELAYED[(code, status)] = cls
    return cls(message or None, **fields)
