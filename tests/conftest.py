"""Fixtures shared by the whole suite: a real encproxy server and real clients."""
from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.backends import INTERMITTENT, Backend, Stored, start_backend
from support.clients import empty_and_delete, make_client
from support.server import RunningServer, start_server

# Every test that uses `server` runs once per storage backend. moto, Ceph RGW and SeaweedFS
# are started by scripts/services/*; one that cannot start fails its tests, never skips them.
BACKENDS = ["file", "moto", pytest.param("ceph", marks=pytest.mark.rgw),
            pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)]
_QUIRKS_SEEN: dict[str, set[str]] = {}

# What runs where.  The file store and Ceph RGW (the real storage) run every test; moto,
# the second S3 implementation, runs every module but these, whose subject is encproxy's
# own work on an S3 backend rather than how one S3 implementation answers it: once one S3
# backend has run them, another adds time and no finding.  A new module runs everywhere
# until it is listed here.
S3_BACKEND_INDEPENDENT = frozenset({
    "test_attacker_records.py", "test_attacker_reads.py",          # encproxy's verification
    "test_encrypted_copy.py", "test_encrypted_multipart.py",       # encproxy's own format
    "test_encrypted_multipart_clients.py", "test_encryption_clients.py",  # client tiers: one
    "test_node_sdk.py", "test_s3cmd_multipart.py", "test_cli.py",          # S3 backend each
    "test_minio_py.py", "test_client_sizes.py",
    "test_bucket_encryption_replicas.py", "test_orphaned_uploads.py",  # encproxy's records
    "test_operations_rotation.py", "test_backend_failures.py",
    "test_anonymous_through_backend.py",   # moto checks no ACLs: every anonymous test xfails
    # encproxy's round trips and multipart ETags: Ceph RGW runs them, and SeaweedFS the
    # ETags; moto, the slowest per request, adds minutes and no finding.
    "test_encryption.py", "test_multipart_etags.py", "test_listing_facts.py",
    # Versions and checksums as backends keep them: Ceph RGW and SeaweedFS, two real
    # implementations, run them.  Authentication and unknown subresources are encproxy's
    # own answers, which Ceph RGW runs through an S3 backend (about 70 s of moto).
    "test_versions_encrypted.py", "test_checksums_roundtrip.py", "test_auth.py",
    "test_unknown_subresources.py",
})
# SeaweedFS, the third S3 implementation, runs only these modules (an allow-list: a new
# module does not run on it until it is listed here).  The rule: a module is here when its
# subject is how a backend answers the S3 requests encproxy relays or builds on (objects and
# keys, listings and their order, multipart parts and ETags, versions, conditional writes,
# checksums, passthrough of what encproxy does not encrypt), so that a second real
# implementation can disagree with Ceph RGW and moto; and the tier as a whole stays within
# its CI budget: at most about 2.5 minutes in one pytest session (`-k seaweedfs`: 108 s on
# 2 CPUs for these eight).  Everything else already runs on the file store, moto and Ceph.
SEAWEEDFS_MODULES = frozenset({
    "test_objects.py", "test_listing.py", "test_multipart.py", "test_conditional_writes.py",
    "test_checksums_roundtrip.py", "test_backend_passthrough.py",
    "test_versions_encrypted.py", "test_multipart_etags.py", "test_listing_facts.py",
})


# TEST_ALL_BACKENDS=1 turns both lists off: every module then runs on every backend (moto
# and SeaweedFS included), to check by hand that the whole suite holds on each S3
# implementation, not only on the modules CI's time budget runs there.  Unset (CI), they
# apply.  Not ENCPROXY_*: the server would read that as a setting and refuse it.
ALL_BACKENDS = os.environ.get("TEST_ALL_BACKENDS") == "1"


def _backend_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("backend") if callspec is not None else None


def _deselected(item: pytest.Item) -> bool:
    if ALL_BACKENDS:
        return False
    backend = _backend_of(item)
    if backend == "moto":
        return item.path.name in S3_BACKEND_INDEPENDENT
    if backend == "seaweedfs":
        return item.path.name not in SEAWEEDFS_MODULES
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave moto out of the modules in S3_BACKEND_INDEPENDENT and SeaweedFS out of those
    not in SEAWEEDFS_MODULES (deselected, not skipped)."""
    kept, dropped = [], []
    for item in items:
        (dropped if _deselected(item) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    started = start_backend(request.param, tmp_path_factory.mktemp(request.param))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def server(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("encproxy"), env=backend.server_env())
    yield running
    running.stop()


@pytest.fixture(scope="session")
def backend_client(backend: Backend):
    """boto3 on the backend itself (None for the file store): what the backend holds."""
    return backend.client() if backend.is_s3 else None


@pytest.fixture(scope="session")
def stored(backend: Backend, server: RunningServer) -> Stored:
    """Direct read/write access to what the backend holds, whatever its kind."""
    return Stored(backend, server.root)


class Quirks:
    """Known differences of the current backend from AWS (support.backends.QUIRKS).

    ``quirks(name)`` is the reason text if the backend has that quirk (for tests whose
    check differs by design), else None. ``with quirks.breaks(name):`` wraps assertions
    the quirk breaks: on that backend they must fail, and the test is reported as
    xfail with the reason; if they pass, the test fails, so a stale entry is noticed.
    Every quirk exercised is listed at the end of the run.
    """

    def __init__(self, backend: Backend, nodeid: str) -> None:
        self.backend = backend
        self.nodeid = nodeid

    def __call__(self, name: str) -> str | None:
        reason = self.backend.quirk(name)
        if reason is not None:
            _QUIRKS_SEEN.setdefault(f"{self.backend.kind}: {name}: {reason}", set()).add(
                self.nodeid)
        return reason

    @contextlib.contextmanager
    def breaks(self, name: str) -> Iterator[None]:
        reason = self(name)
        if reason is None:
            yield
            return
        try:
            yield
        except (AssertionError, ClientError, subprocess.CalledProcessError):
            pytest.xfail(f"{self.backend.kind} quirk {name}: {reason}")
        if (self.backend.kind, name) in INTERMITTENT:
            return  # a race that did not happen this time: the assertions held
        pytest.fail(f"the known {self.backend.kind} quirk {name!r} did not show: update "
                    f"QUIRKS in tests/support/backends.py and docs/BACKENDS.md")


@pytest.fixture
def quirks(backend: Backend, request: pytest.FixtureRequest) -> Quirks:
    return Quirks(backend, request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand the quirks it saw to the controller, which reports."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["quirks_seen"] = {text: sorted(tests) for text, tests in _QUIRKS_SEEN.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:  # noqa: ARG001
    """In pytest-xdist's controller: a worker's quirks, for the summary."""
    for text, tests in getattr(node, "workeroutput", {}).get("quirks_seen", {}).items():
        _QUIRKS_SEEN.setdefault(text, set()).update(tests)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if _QUIRKS_SEEN:
        terminalreporter.section("backend quirks (documented in docs/BACKENDS.md)")
        for quirk_text, tests in sorted(_QUIRKS_SEEN.items()):
            terminalreporter.write_line(f"{quirk_text} [{len(tests)} test(s)]")


@pytest.fixture(scope="session")
def s3(server: RunningServer):
    return make_client(server.endpoint)


@pytest.fixture
def bucket(s3) -> Iterator[str]:
    name = "test-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    yield name
    # Leave nothing behind, so that DeleteBucket's own rules stay exercised.
    empty_and_delete(s3, name)

