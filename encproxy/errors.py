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


# -- authentication and request shape -------------------------------------------------
class AccessDenied(S3Error):
    """S3 error AccessDenied (403)."""

    code = "AccessDenied"
    status = 403
    default_message = "Access Denied"


class InvalidAccessKeyId(S3Error):
    """S3 error InvalidAccessKeyId (403)."""

    code = "InvalidAccessKeyId"
    status = 403
    default_message = "The AWS Access Key Id you provided does not exist in our records."


class SignatureDoesNotMatch(S3Error):
    """S3 error SignatureDoesNotMatch (403)."""

    code = "SignatureDoesNotMatch"
    status = 403
    default_message = (
        "The request signature we calculated does not match the signature you provided. Check "
        "your key and signing method."
    )


class RequestTimeTooSkewed(S3Error):
    """S3 error RequestTimeTooSkewed (403)."""

    code = "RequestTimeTooSkewed"
    status = 403
    default_message = "The difference between the request time and the current time is too large."


class AuthorizationHeaderMalformed(S3Error):
    """S3 error AuthorizationHeaderMalformed (400)."""

    code = "AuthorizationHeaderMalformed"
    status = 400
    default_message = "The authorization header is malformed."


class AuthorizationQueryParametersError(S3Error):
    """S3 error AuthorizationQueryParametersError (400)."""

    code = "AuthorizationQueryParametersError"
    status = 400
    default_message = "Query-string authentication parameters are malformed."


class ExpiresOutOfRange(AuthorizationQueryParametersError):
    """S3 error AuthorizationQueryParametersError, with 403: a presigned URL's X-Amz-Expires
    is negative or over a week, which S3 answers 403 (other query errors are 400)."""

    status = 403


class XAmzContentSHA256Mismatch(S3Error):
    """S3 error XAmzContentSHA256Mismatch (400)."""

    code = "XAmzContentSHA256Mismatch"
    status = 400
    default_message = (
        "The provided 'x-amz-content-sha256' header does not match what was computed."
    )


class BadDigest(S3Error):
    """S3 error BadDigest (400)."""

    code = "BadDigest"
    status = 400
    default_message = "The Content-MD5 or checksum you specified did not match what we received."


class InvalidDigest(S3Error):
    """S3 error InvalidDigest (400)."""

    code = "InvalidDigest"
    status = 400
    default_message = "The Content-MD5 or checksum you specified is not valid."


class InvalidRequest(S3Error):
    """S3 error InvalidRequest (400)."""

    code = "InvalidRequest"
    status = 400
    default_message = "Invalid Request"


class InvalidArgument(S3Error):
    """S3 error InvalidArgument (400)."""

    code = "InvalidArgument"
    status = 400
    default_message = "Invalid Argument"


class InvalidURI(S3Error):
    """S3 error InvalidURI (400)."""

    code = "InvalidURI"
    status = 400
    default_message = "Couldn't parse the specified URI."


class MalformedXML(S3Error):
    """S3 error MalformedXML (400)."""

    code = "MalformedXML"
    status = 400
    default_message = (
        "The XML you provided was not well-formed or did not validate against our published "
        "schema."
    )


class MalformedACLError(S3Error):
    """S3 error MalformedACLError (400): an AccessControlPolicy that does not validate."""

    code = "MalformedACLError"
    status = 400
    default_message = (
        "The XML you provided was not well-formed or did not validate against our published "
        "schema."
    )


class UnresolvableGrantByEmailAddress(S3Error):
    """S3 error UnresolvableGrantByEmailAddress (400)."""

    code = "UnresolvableGrantByEmailAddress"
    status = 400
    default_message = "The email address you provided does not match any account on record."


class UnexpectedContent(S3Error):
    """S3 error UnexpectedContent (400): a body where the request takes none."""

    code = "UnexpectedContent"
    status = 400
    default_message = "This request does not support content."


class IncompleteBody(S3Error):
    """S3 error IncompleteBody (400)."""

    code = "IncompleteBody"
    status = 400
    default_message = (
        "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )


class MissingContentLength(S3Error):
    """S3 error MissingContentLength (411)."""

    code = "MissingContentLength"
    status = 411
    default_message = "You must provide the Content-Length HTTP header."


class RequestTimeout(S3Error):
    """S3 error RequestTimeout (400)."""

    code = "RequestTimeout"
    status = 400
    default_message = (
        "Your socket connection to the server was not read from or written to within the timeout "
        "period."
    )


class EntityTooLarge(S3Error):
    """S3 error EntityTooLarge (400)."""

    code = "EntityTooLarge"
    status = 400
    default_message = "Your proposed upload exceeds the maximum allowed object size."


class KeyTooLongError(S3Error):
    """S3 error KeyTooLongError (400)."""

    code = "KeyTooLongError"
    status = 400
    default_message = "Your key is too long."


class MetadataTooLarge(S3Error):
    """S3 error MetadataTooLarge (400)."""

    code = "MetadataTooLarge"
    status = 400
    default_message = "Your metadata headers exceed the maximum allowed metadata size."


class MethodNotAllowed(S3Error):
    """S3 error MethodNotAllowed (405)."""

    code = "MethodNotAllowed"
    status = 405
    default_message = "The specified method is not allowed against this resource."


class NotImplementedError_(S3Error):
    """S3 error NotImplemented (501)."""

    code = "NotImplemented"
    status = 501
    default_message = (
        "A header or operation you provided implies functionality that is not implemented."
    )


# The class's own name is S3's code, as it always was (in logs and metrics).
NotImplementedError_.__name__ = NotImplementedError_.__qualname__ = "NotImplemented"


class InvalidStorageClass(S3Error):
    """S3 error InvalidStorageClass (400)."""

    code = "InvalidStorageClass"
    status = 400
    default_message = "The storage class you specified is not valid."


class InvalidEncryptionAlgorithmError(S3Error):
    """S3 error InvalidEncryptionAlgorithmError (400)."""

    code = "InvalidEncryptionAlgorithmError"
    status = 400
    default_message = "The Encryption request you specified is not valid. Supported value: AES256."


# -- POST Object (browser uploads) ----------------------------------------------------
class InvalidPolicyDocument(S3Error):
    """S3 error InvalidPolicyDocument (400)."""

    code = "InvalidPolicyDocument"
    status = 400
    default_message = (
        "The content of the form does not meet the conditions specified in the policy document."
    )


class IncorrectNumberOfFilesInPostRequest(S3Error):
    """S3 error IncorrectNumberOfFilesInPostRequest (400)."""

    code = "IncorrectNumberOfFilesInPostRequest"
    status = 400
    default_message = "POST requires exactly one file upload per request."


class MalformedPOSTRequest(S3Error):
    """S3 error MalformedPOSTRequest (400)."""

    code = "MalformedPOSTRequest"
    status = 400
    default_message = "The body of your POST request is not well-formed multipart/form-data."


class MaxPostPreDataLengthExceededError(S3Error):
    """S3 error MaxPostPreDataLengthExceededError (400)."""

    code = "MaxPostPreDataLengthExceededError"
    status = 400
    default_message = "Your POST request fields preceding the upload file were too large."


# -- buckets -------------------------------------------------------------------------
class ServerSideEncryptionConfigurationNotFoundError(S3Error):
    """S3 error ServerSideEncryptionConfigurationNotFoundError (404)."""

    code = "ServerSideEncryptionConfigurationNotFoundError"
    status = 404
    default_message = "The server side encryption configuration was not found"


class MaxMessageLengthExceeded(S3Error):
    """S3 error MaxMessageLengthExceeded (400)."""

    code = "MaxMessageLengthExceeded"
    status = 400
    default_message = "Your request was too big."


class InvalidBucketName(S3Error):
    """S3 error InvalidBucketName (400)."""

    code = "InvalidBucketName"
    status = 400
    default_message = "The specified bucket is not valid."


class NoSuchBucket(S3Error):
    """S3 error NoSuchBucket (404)."""

    code = "NoSuchBucket"
    status = 404
    default_message = "The specified bucket does not exist"


class BucketAlreadyOwnedByYou(S3Error):
    """S3 error BucketAlreadyOwnedByYou (409)."""

    code = "BucketAlreadyOwnedByYou"
    status = 409
    default_message = (
        "Your previous request to create the named bucket succeeded and you already own it."
    )


class BucketNotEmpty(S3Error):
    """S3 error BucketNotEmpty (409)."""

    code = "BucketNotEmpty"
    status = 409
    default_message = "The bucket you tried to delete is not empty"


class IllegalLocationConstraintException(S3Error):
    """S3 error IllegalLocationConstraintException (400)."""

    code = "IllegalLocationConstraintException"
    status = 400
    default_message = "The specified location-constraint is not valid."


# -- objects -------------------------------------------------------------------------
class NoSuchKey(S3Error):
    """S3 error NoSuchKey (404)."""

    code = "NoSuchKey"
    status = 404
    default_message = "The specified key does not exist."


class InvalidRange(S3Error):
    """S3 error InvalidRange (416)."""

    code = "InvalidRange"
    status = 416
    default_message = "The requested range is not satisfiable"


class InvalidPartNumber(S3Error):
    """S3 error InvalidPartNumber (416)."""

    code = "InvalidPartNumber"
    status = 416
    default_message = "The requested partnumber is not satisfiable"


class NoSuchVersion(S3Error):
    """S3 error NoSuchVersion (404)."""

    code = "NoSuchVersion"
    status = 404
    default_message = "The specified version does not exist."


# -- a bucket configuration that does not exist (what S3 answers a read of it) ---------
class NoSuchBucketPolicy(S3Error):
    """S3 error NoSuchBucketPolicy (404)."""

    code = "NoSuchBucketPolicy"
    status = 404
    default_message = "The bucket policy does not exist"


class NoSuchCORSConfiguration(S3Error):
    """S3 error NoSuchCORSConfiguration (404)."""

    code = "NoSuchCORSConfiguration"
    status = 404
    default_message = "The CORS configuration does not exist"


class NoSuchTagSet(S3Error):
    """S3 error NoSuchTagSet (404)."""

    code = "NoSuchTagSet"
    status = 404
    default_message = "The TagSet does not exist"


class IllegalVersioningConfigurationException(S3Error):
    """S3 error IllegalVersioningConfigurationException (400)."""

    code = "IllegalVersioningConfigurationException"
    status = 400
    default_message = "The versioning configuration specified in the request is invalid."


class InvalidTag(S3Error):
    """S3 error InvalidTag (400): a tag set that breaks S3's tagging rules."""

    code = "InvalidTag"
    status = 400
    default_message = "The tag provided was not a valid tag."


class NoSuchLifecycleConfiguration(S3Error):
    """S3 error NoSuchLifecycleConfiguration (404)."""

    code = "NoSuchLifecycleConfiguration"
    status = 404
    default_message = "The lifecycle configuration does not exist"


class NoSuchWebsiteConfiguration(S3Error):
    """S3 error NoSuchWebsiteConfiguration (404)."""

    code = "NoSuchWebsiteConfiguration"
    status = 404
    default_message = "The specified bucket does not have a website configuration"


class ReplicationConfigurationNotFoundError(S3Error):
    """S3 error ReplicationConfigurationNotFoundError (404)."""

    code = "ReplicationConfigurationNotFoundError"
    status = 404
    default_message = "The replication configuration was not found"


class ObjectLockConfigurationNotFoundError(S3Error):
    """S3 error ObjectLockConfigurationNotFoundError (404)."""

    code = "ObjectLockConfigurationNotFoundError"
    status = 404
    default_message = "Object Lock configuration does not exist for this bucket"


class OwnershipControlsNotFoundError(S3Error):
    """S3 error OwnershipControlsNotFoundError (404)."""

    code = "OwnershipControlsNotFoundError"
    status = 404
    default_message = "The bucket ownership controls were not found"


class NoSuchPublicAccessBlockConfiguration(S3Error):
    """S3 error NoSuchPublicAccessBlockConfiguration (404)."""

    code = "NoSuchPublicAccessBlockConfiguration"
    status = 404
    default_message = "The public access block configuration was not found"


class NoSuchConfiguration(S3Error):
    """S3 error NoSuchConfiguration (404): an analytics, inventory, metrics or
    intelligent-tiering configuration id that does not exist."""

    code = "NoSuchConfiguration"
    status = 404
    default_message = "The specified configuration does not exist."


class PreconditionFailed(S3Error):
    """S3 error PreconditionFailed (412)."""

    code = "PreconditionFailed"
    status = 412
    default_message = "At least one of the pre-conditions you specified did not hold"


# -- multipart -----------------------------------------------------------------------
class NoSuchUpload(S3Error):
    """S3 error NoSuchUpload (404)."""

    code = "NoSuchUpload"
    status = 404
    default_message = (
        "The specified multipart upload does not exist. The upload ID might be invalid, or the "
        "multipart upload might have been aborted or completed."
    )


class InvalidPart(S3Error):
    """S3 error InvalidPart (400)."""

    code = "InvalidPart"
    status = 400
    default_message = (
        "One or more of the specified parts could not be found. The part might not have been "
        "uploaded, or the specified entity tag might not have matched the part's entity tag."
    )


class InvalidPartOrder(S3Error):
    """S3 error InvalidPartOrder (400)."""

    code = "InvalidPartOrder"
    status = 400
    default_message = (
        "The list of parts was not in ascending order. Parts must be ordered by part number."
    )


class EntityTooSmall(S3Error):
    """S3 error EntityTooSmall (400)."""

    code = "EntityTooSmall"
    status = 400
    default_message = "Your proposed upload is smaller than the minimum allowed object size."


# -- service -------------------------------------------------------------------------
class InternalError(S3Error):
    """S3 error InternalError (500)."""

    code = "InternalError"
    status = 500
    default_message = "We encountered an internal error. Please try again."


class ServiceUnavailable(S3Error):
    """S3 error ServiceUnavailable (503)."""

    code = "ServiceUnavailable"
    status = 503
    default_message = "Please reduce your request rate."


class SlowDown(S3Error):
    """S3 error SlowDown (503)."""

    code = "SlowDown"
    status = 503
    default_message = "Please reduce your request rate."


# -- key providers (docs/KEYS.md §5): the codes S3 answers for SSE-KMS ---------------
class KMSNotFound(S3Error):
    """S3 error KMS.NotFoundException (400)."""

    code = "KMS.NotFoundException"
    status = 400
    default_message = "The specified KMS key does not exist."


class KMSDisabled(S3Error):
    """S3 error KMS.DisabledException (400)."""

    code = "KMS.DisabledException"
    status = 400
    default_message = "The specified KMS key is disabled."


class KMSInvalidState(S3Error):
    """S3 error KMS.KMSInvalidStateException (400)."""

    code = "KMS.KMSInvalidStateException"
    status = 400
    default_message = "The specified KMS key is not in a state that allows this operation."


class KeyProviderUnavailable(S3Error):
    """S3 error ServiceUnavailable (503)."""

    code = "ServiceUnavailable"
    status = 503
    default_message = "The key management service is unavailable. Please try again."


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
        # A code only the backend knows: a leaf made at run time, as no declaration can be.
        cls = type("Relayed" + code, (S3Error,), {
            "code": code, "status": status, "default_message": message or code,
            "__doc__": f"S3 error {code} ({status}).",
        })
        if len(_RELAYED) < _MAX_RELAYED_CLASSES:
            _RELAYED[(code, status)] = cls
    return cls(message or None, **fields)


class BadRequest(S3Error):
    """S3 error BadRequest (400): what S3 answers a CORS preflight it cannot evaluate."""

    code = "BadRequest"
    status = 400
    default_message = "Insufficient information. Origin request header needed."


class AccessForbidden(S3Error):
    """S3 error AccessForbidden (403): a CORS preflight that no rule allows."""

    code = "AccessForbidden"
    status = 403
    default_message = "CORSResponse: This CORS request is not allowed."
