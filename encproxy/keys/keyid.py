"""Key ids as clients and operators write them, and their normal form (docs/KEYS.md §3).

A key id (``[keys] default_key``, a bucket's ``KMSMasterKeyID``, the
``x-amz-server-side-encryption-aws-kms-key-id`` header) may be written three ways:

* a bare id:  ``default``, ``1234abcd-12ab-34cd-56ef-1234567890ab``;
* an alias:   ``alias/NAME``;
* an ARN:     ``arn:aws:kms:REGION:ACCOUNT:key/ID`` or ``arn:aws:kms:REGION:ACCOUNT:alias/NAME``.

:func:`normalize_key_id` maps each to the one string a provider names the key by:

* ``local``, ``pkcs11``, ``kmip`` have one namespace of key names, so ``alias/NAME``,
  ``arn:...:alias/NAME`` and ``arn:...:key/NAME`` all mean ``NAME`` (region and account
  are ignored). Names are 1..128 characters of ``A-Z a-z 0-9 _ . -``, starting with a
  letter or digit (they become file names and token labels).
* ``awskms`` keeps the form it was given (KMS resolves aliases and ARNs itself), after
  checking its shape; ``DescribeKey`` gives the key ARN, which ``KeyProvider.describe``
  reports.

A malformed id is ``KMS.NotFoundException`` ("Invalid keyId ..."), as S3 answers.

Pure module: no I/O, no third-party imports.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from encproxy import errors

MAX_KEY_ID_LENGTH = 128  # what the object envelope can record (docs/FORMAT.md §2)

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z", re.ASCII)
_ARN_RE = re.compile(
    r"arn:(aws[a-z-]*):kms:([a-z0-9-]{0,32}):([0-9]{0,12}):(key|alias)/(.+)\Z", re.ASCII)
_KMS_BARE_RE = re.compile(r"(mrk-)?[A-Za-z0-9-]{1,128}\Z", re.ASCII)
_KMS_ALIAS_RE = re.compile(r"[A-Za-z0-9/_-]{1,250}\Z", re.ASCII)
_PRINTABLE_RE = re.compile(r"[\x21-\x7e]{1,128}\Z", re.ASCII)

Form = Literal["id", "alias", "arn"]


@dataclass(frozen=True)
class KeyRef:
    """A parsed key id: its form, the name inside it, and the ARN's region and account."""

    text: str
    form: Form
    name: str                     # the bare id, the alias name (without "alias/"), or the ARN's
    arn_resource: str | None = None  # "key" or "alias" for an ARN
    region: str | None = None
    account: str | None = None

    @property
    def is_alias(self) -> bool:
        return self.form == "alias" or self.arn_resource == "alias"


def invalid_key_id(text: str) -> errors.S3Error:
    shown = "".join(c if " " <= c <= "~" else "?" for c in text[:128])
    return errors.KMSNotFound(f"Invalid keyId '{shown}'")


def parse_key_id(text: str) -> KeyRef:
    """Split a key id into its form and name; raise KMS.NotFoundException if malformed."""
    value = text.strip()
    if not _PRINTABLE_RE.match(value):
        raise invalid_key_id(text)
    if value.startswith("arn:"):
        m = _ARN_RE.match(value)
        if m is None:
            raise invalid_key_id(text)
        _, region, account, resource, name = m.groups()
        return KeyRef(value, "arn", name, resource, region or None, account or None)
    if value.startswith("alias/"):
        name = value[len("alias/"):]
        if not name:
            raise invalid_key_id(text)
        return KeyRef(value, "alias", name)
    return KeyRef(value, "id", value)


def normalize_key_id(text: str, provider: str) -> str:
    """The id ``provider`` names this key by (see the module docstring)."""
    ref = parse_key_id(text)
    if provider == "awskms":
        if ref.form == "id" and not _KMS_BARE_RE.match(ref.name):
            raise invalid_key_id(text)
        if ref.is_alias and not _KMS_ALIAS_RE.match(ref.name):
            raise invalid_key_id(text)
        return ref.text
    if not NAME_RE.match(ref.name):
        raise invalid_key_id(text)
    return ref.name


__all__ = ["KeyRef", "MAX_KEY_ID_LENGTH", "NAME_RE", "invalid_key_id", "normalize_key_id",
           "parse_key_id"]
