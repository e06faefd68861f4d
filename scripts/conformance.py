"""ceph/s3-tests against encproxy, Ceph RGW and SeaweedFS (run: scripts/conformance; see
docs/CONFORMANCE.md).

For each target named by ``--targets`` (default: all five, in this order):

* ``file``:         encproxy on its embedded file store, ``[encryption] default = AES256``;
* ``rgw``:          Ceph RGW 16.2 alone (scripts/services/ceph-rgw), with a second RGW user;
* ``encproxy-rgw``: encproxy with ``[backend] type = s3`` in front of a fresh RGW, default AES256;
* ``seaweedfs``:    SeaweedFS 4.48 alone (scripts/services/seaweedfs, which configures the
  second identity);
* ``encproxy-seaweedfs``: encproxy in front of a fresh SeaweedFS, default AES256;

it starts what the target needs in a temporary directory (bounded in time, free ports, stopped
by PID, nothing left running on exit, error or Ctrl-C), runs the suite with the conformance
kit's ``run-s3tests.sh`` (``../shared/conformance/``), and keeps each target's ``junit.xml``,
``failures.tsv``, ``summary.txt`` and ``pytest.log`` (plus the server's log) under
``RUN_DIR/<target>/``.  It then prints, and writes to ``RUN_DIR/table.md``, the per-group
table of every target (groups as the kit's ``s3tests_groups.py`` defines them) and, for each
backend whose two targets both ran, the differential: the tests the backend passes alone that
fail through encproxy (``RUN_DIR/differential.tsv`` for RGW,
``RUN_DIR/differential-seaweedfs.tsv`` for SeaweedFS).

The suite's second user (``ALT_*``) is a second credential: in encproxy's ``[credentials]``,
and a second user on RGW (a second identity on SeaweedFS), to which encproxy in front of it
maps it (``[backend_credentials]``).  ``MAIN_USER_ID``/``MAIN_DISPLAY_NAME`` (and ``ALT_*``)
are the Owner each credential's ListBuckets reports, since the ACL tests compare against
them.  encproxy's keyring gets the KMS key ids the suite uses, ``testkey-1`` and
``testkey-2``.
``test_upload_part_copy_percent_encoded_key`` is deselected wherever RGW is the server or the
backend: it aborts RGW 16.2.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.backends import Backend, start_ceph, start_seaweedfs  # noqa: E402
from support.server import ACCESS_KEY, SECRET_KEY, RunningServer, create_keys, start_server  # noqa: E402,E501

TARGETS = ("file", "rgw", "encproxy-rgw", "seaweedfs", "encproxy-seaweedfs")
# Backend alone, encproxy in front of it, the differential's file: compared when both ran.
PAIRS = (("rgw", "encproxy-rgw", "differential.tsv"),
         ("seaweedfs", "encproxy-seaweedfs", "differential-seaweedfs.tsv"))
KMS_KEYS = ("testkey-1", "testkey-2")
# The suite's second user: a second credential of encproxy, a second user of RGW.
ALT_ACCESS_KEY = "S3TESTS_ALT_KEY"
ALT_SECRET_KEY = "s3tests-alt-secret-0123456789"
ALT_RGW_UID = "s3tests-alt"
RGW_CRASHER = "test_upload_part_copy_percent_encoded_key"   # aborts RGW 16.2
STATUSES = ("passed", "failed", "error", "skipped")


class Interrupted(Exception):
    """SIGTERM or SIGHUP: stop like Ctrl-C, through every ``finally``."""


@dataclass(frozen=True)
class Kit:
    """Where the conformance kit and the suite are."""
    scripts: Path      # run-s3tests.sh, setup-venv.sh, s3tests_groups.py
    suite: Path        # the extracted ceph/s3-tests tree
    venv: Path


@dataclass(frozen=True)
class Endpoint:
    """What run-s3tests.sh needs to reach a server as the suite's two users."""
    url: str
    main: tuple[str, str]
    alt: tuple[str, str]
    deselect_rgw_crasher: bool


@dataclass
class Result:
    target: str
    ran: bool = False
    note: str = ""
    # (classname, name) -> (status, group, message)
    cases: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)


def find_kit() -> Kit:
    """``$S3TESTS_DIR`` is either the kit (it holds run-s3tests.sh) or the suite's tree."""
    default = (REPO / ".." / "shared" / "conformance").resolve()
    given = os.environ.get("S3TESTS_DIR")
    scripts, suite = default, default / "s3-tests"
    if given:
        path = Path(given).resolve()
        if (path / "run-s3tests.sh").is_file():
            scripts, suite = path, path / "s3-tests"
        else:
            suite = path
    if not (scripts / "run-s3tests.sh").is_file():
        sys.exit(f"conformance: no run-s3tests.sh in {scripts}")
    if not (suite / "s3tests" / "functional" / "test_s3.py").is_file():
        sys.exit(f"conformance: no s3tests/functional/test_s3.py under {suite}")
    return Kit(scripts, suite, Path(os.environ.get("S3TESTS_VENV", "/tmp/s3tests-venv")))


def ensure_venv(kit: Kit) -> None:
    if (kit.venv / "bin" / "python").exists():
        return
    print(f"conformance: building the suite's virtualenv in {kit.venv} (setup-venv.sh)")
    env = {**os.environ, "S3TESTS_DIR": str(kit.suite), "S3TESTS_VENV": str(kit.venv),
           "WITH_MOTO": "0"}
    subprocess.run([str(kit.scripts / "setup-venv.sh")], env=env, check=True, timeout=900)


def load_groups(kit: Kit) -> ModuleType:
    spec = importlib.util.spec_from_file_location("s3tests_groups",
                                                  kit.scripts / "s3tests_groups.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def owner(url: str, key: tuple[str, str]) -> tuple[str, str]:
    """The Owner (ID, DisplayName) ListBuckets reports for this credential."""
    import boto3
    from botocore.config import Config
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=key[0], aws_secret_access_key=key[1],
                          config=Config(s3={"addressing_style": "path"},
                                        retries={"max_attempts": 2}, connect_timeout=5,
                                        read_timeout=30))
    got = client.list_buckets().get("Owner", {})
    return got.get("ID", ""), got.get("DisplayName", "")


# -- the servers --------------------------------------------------------------------------
@contextmanager
def encproxy(directory: Path, out: Path, backend: Backend | None) -> Iterator[str]:
    """encproxy (gunicorn, as users run it), default AES256, both users, the suite's KMS keys.

    In front of RGW or SeaweedFS, the second user is signed through to RGW's second user
    (``[backend_credentials]``), as a gateway shared by two teams is configured; the main
    user goes as encproxy's own backend identity."""
    env = {"ENCPROXY_ENCRYPTION_DEFAULT": "AES256",
           f"ENCPROXY_CREDENTIALS_{ALT_ACCESS_KEY}": ALT_SECRET_KEY}
    if backend is not None:
        env.update(backend.server_env())
        env[f"ENCPROXY_BACKEND_CREDENTIALS_{ALT_ACCESS_KEY}"] = \
            f"{ALT_ACCESS_KEY} {ALT_SECRET_KEY}"
    server: RunningServer | None = None
    try:
        server = start_server(directory, env=env, timeout=60)
        # The keyring rescans when a key id is missing: keys made now are found.
        create_keys(server.config, *KMS_KEYS)
        yield server.endpoint
    finally:
        if server is not None:
            server.stop()
            with suppress(OSError):
                shutil.copy(server.log, out / "server.log")


@contextmanager
def rgw(directory: Path, out: Path, with_alt_user: bool) -> Iterator[Backend]:
    """A fresh one-node Ceph cluster with radosgw, by scripts/services/ceph-rgw."""
    try:
        backend = start_ceph(directory)
        if with_alt_user:
            subprocess.run(["radosgw-admin", "-c", str(directory / "ceph.conf"), "user", "create",
                            "--uid", ALT_RGW_UID, "--display-name", "s3-tests alt user",
                            "--access-key", ALT_ACCESS_KEY, "--secret-key", ALT_SECRET_KEY],
                           check=True, capture_output=True, timeout=60)
        yield backend
    finally:
        # Also after a failed or interrupted start: the script stops what its pid files name.
        subprocess.run([str(REPO / "scripts" / "services" / "ceph-rgw"), "stop", str(directory)],
                       capture_output=True, timeout=90)
        with suppress(OSError):
            shutil.copytree(directory / "log", out / "rgw-log", dirs_exist_ok=True)


@contextmanager
def seaweedfs(directory: Path, out: Path) -> Iterator[Backend]:
    """A fresh SeaweedFS (``weed mini``) by scripts/services/seaweedfs, whose identities
    include the suite's second user (ALT_ACCESS_KEY / ALT_SECRET_KEY, its defaults)."""
    try:
        yield start_seaweedfs(directory)
    finally:
        # Also after a failed or interrupted start: the script stops what its pid file names.
        subprocess.run([str(REPO / "scripts" / "services" / "seaweedfs"), "stop", str(directory)],
                       capture_output=True, timeout=60)
        with suppress(OSError):
            shutil.copy(directory / "weed.log", out / "weed.log")


@contextmanager
def target_endpoint(target: str, work: Path, out: Path) -> Iterator[Endpoint]:
    main, alt = (ACCESS_KEY, SECRET_KEY), (ALT_ACCESS_KEY, ALT_SECRET_KEY)
    if target == "file":
        with encproxy(work / "encproxy", out, None) as url:
            yield Endpoint(url, main, alt, deselect_rgw_crasher=False)
    elif target == "rgw":
        with rgw(work / "rgw", out, with_alt_user=True) as backend:
            assert backend.endpoint is not None
            yield Endpoint(backend.endpoint, (backend.access_key, backend.secret_key), alt,
                           deselect_rgw_crasher=True)
    elif target == "encproxy-rgw":
        with rgw(work / "rgw", out, with_alt_user=True) as backend, \
                encproxy(work / "encproxy", out, backend) as url:
            yield Endpoint(url, main, alt, deselect_rgw_crasher=True)
    elif target == "seaweedfs":
        with seaweedfs(work / "seaweedfs", out) as backend:
            assert backend.endpoint is not None
            yield Endpoint(backend.endpoint, (backend.access_key, backend.secret_key), alt,
                           deselect_rgw_crasher=False)
    elif target == "encproxy-seaweedfs":
        with seaweedfs(work / "seaweedfs", out) as backend, \
                encproxy(work / "encproxy", out, backend) as url:
            yield Endpoint(url, main, alt, deselect_rgw_crasher=False)
    else:
        raise ValueError(target)


# -- one run of the suite -------------------------------------------------------------------
def run_suite(kit: Kit, ep: Endpoint, out: Path, args: argparse.Namespace) -> int:
    (main_id, main_name), (alt_id, alt_name) = owner(ep.url, ep.main), owner(ep.url, ep.alt)
    print(f"  owners: main {main_name!r} {main_id[:16]}..., alt {alt_name!r} {alt_id[:16]}...")
    k = args.k or ""
    if ep.deselect_rgw_crasher:
        k = f"({k}) and not {RGW_CRASHER}" if k else f"not {RGW_CRASHER}"
    env = {**os.environ, "S3_ENDPOINT": ep.url, "S3TESTS_DIR": str(kit.suite),
           "S3TESTS_VENV": str(kit.venv), "S3TESTS_OUT": str(out),
           "MAIN_ACCESS_KEY": ep.main[0], "MAIN_SECRET_KEY": ep.main[1],
           "ALT_ACCESS_KEY": ep.alt[0], "ALT_SECRET_KEY": ep.alt[1],
           "MAIN_USER_ID": main_id, "MAIN_DISPLAY_NAME": main_name,
           "ALT_USER_ID": alt_id, "ALT_DISPLAY_NAME": alt_name,
           "KMS_KEYID": KMS_KEYS[0], "KMS_KEYID2": KMS_KEYS[1],
           "S3TESTS_GROUPS": args.groups, "S3TESTS_TEST_TIMEOUT": str(args.test_timeout)}
    env.pop("PYTEST_K", None)
    if k:
        env["PYTEST_K"] = k
    # Its own session: a Ctrl-C reaches only this driver, which then stops the whole run.
    proc = subprocess.Popen([str(kit.scripts / "run-s3tests.sh")], env=env,
                            start_new_session=True)
    deadline = time.monotonic() + args.target_minutes * 60
    try:
        while True:
            try:
                return proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                print(f"  run-s3tests.sh still running after {args.target_minutes} min: stopped")
                return -1
            print(f"  ... {progress(out / 'pytest.log')}", flush=True)
    finally:
        stop_group(proc)


def progress(log: Path) -> str:
    """pytest -q's last progress mark, e.g. '[ 42%]'."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "starting"
    for line in reversed(lines):
        if line.endswith("%]"):
            return line[line.rfind("["):]
    return "collecting"


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own session, and its children (pytest), by its PID."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


def read_junit(path: Path, groups: ModuleType) -> dict[tuple[str, str], tuple[str, str, str]]:
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        status, message = "passed", ""
        for tag, st in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            el = case.find(tag)
            if el is not None:
                status = st
                message = ((el.get("message") or "").splitlines() or [""])[0][:200]
                break
        group = groups.group_of(classname.split(".")[-1] + ".py", name) or "other"
        cases[(classname, name)] = (status, group, message)
    return cases


def run_target(target: str, kit: Kit, groups: ModuleType, work: Path, run_dir: Path,
               args: argparse.Namespace) -> Result:
    out = run_dir / target
    out.mkdir(parents=True, exist_ok=True)
    result = Result(target)
    print(f"== {target}: starting", flush=True)
    started = time.monotonic()
    try:
        with target_endpoint(target, work / target, out) as ep:
            print(f"  endpoint {ep.url}, setup {time.monotonic() - started:.0f} s", flush=True)
            rc = run_suite(kit, ep, out, args)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        result.note = f"could not run: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        print(f"== {target}: {result.note}\n{exc}", file=sys.stderr)
        return result
    junit = out / "junit.xml"
    if junit.is_file() and junit.stat().st_size:
        result.cases = read_junit(junit, groups)
        result.ran = True
    result.note = f"exit {rc}, {(time.monotonic() - started) / 60:.1f} min"
    print(f"== {target}: {result.note}; results in {out}", flush=True)
    return result


# -- the report -------------------------------------------------------------------------------
def counts(result: Result) -> dict[str, dict[str, int]]:
    per: dict[str, dict[str, int]] = {}
    for status, group, _ in result.cases.values():
        for key in (group, "total"):
            per.setdefault(key, dict.fromkeys(STATUSES, 0))[status] += 1
    return per


def differential(alone: Result, through: Result) -> list[tuple[str, str, str, str]]:
    """(group, test, status through encproxy, message) of each test that fails through
    encproxy and that the backend alone passes."""
    rows = []
    for key, (status, group, _) in alone.cases.items():
        if status != "passed" or key not in through.cases:
            continue
        st, _, message = through.cases[key]
        if st in ("failed", "error"):
            rows.append((group, key[1], st, message))
    return sorted(rows)


def report(results: list[Result], groups: ModuleType, run_dir: Path) -> str:
    ran = [r for r in results if r.ran]
    per = {r.target: counts(r) for r in ran}
    by_target = {r.target: r for r in ran}
    # (backend target, differential rows, file name) of each backend whose two targets ran.
    diffs = [(alone, differential(by_target[alone], by_target[through]), name)
             for alone, through, name in PAIRS if alone in by_target and through in by_target]
    keys = [k for k in groups.GROUP_KEYS if any(k in p for p in per.values())]
    keys += ["other"] if any("other" in p for p in per.values()) else []
    head = "| group | " + " | ".join(f"{r.target} pass / fail / err / skip" for r in ran)
    head += "".join(f" | {alone}-only passes" for alone, _, _ in diffs) + " |"
    lines = [head, "|---" * (len(ran) + 1 + len(diffs)) + "|"]
    for key in keys + ["total"]:
        cells = []
        for r in ran:
            c = per[r.target].get(key, dict.fromkeys(STATUSES, 0))
            cells.append(" / ".join(str(c[s]) for s in STATUSES))
        row = f"| {'**total**' if key == 'total' else key} | " + " | ".join(cells) + " |"
        for _, diff, _ in diffs:
            n = len(diff) if key == "total" else sum(1 for d in diff if d[0] == key)
            row += f" {n} |"
        lines.append(row)
    text = "\n".join(lines) + "\n"
    for r in results:
        if not r.ran:
            text += f"\n{r.target}: not measured ({r.note})\n"
    for alone, diff, name in diffs:
        text += (f"\nDifferential: {len(diff)} tests pass on {alone} alone and fail through "
                 f"encproxy ({name})\n")
        text += "".join(f"  {g:<15} {t}  [{s}] {m}\n" for g, t, s, m in diff)
        (run_dir / name).write_text("".join("\t".join(row) + "\n" for row in diff))
    (run_dir / "table.md").write_text(text)
    return text


def describe_tree() -> str:
    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True,
                              timeout=30)
        return done.stdout.rstrip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    head = f"commit {git('log', '-1', '--format=%h')}"
    return head + (" + uncommitted changes:\n" + dirty if dirty else "")


def _interrupt(signum: int, frame: FrameType | None) -> Any:
    # Once: the clean-up that follows (stopping servers and RGW) must not be cut short.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def main() -> int:
    parser = argparse.ArgumentParser(prog="conformance", description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help="comma-separated: " + ", ".join(TARGETS) + " (default: all)")
    parser.add_argument("--groups", default="all-groups",
                        help="s3tests_groups.py group keys or letters, e.g. a,b,d "
                             "(default: all-groups)")
    parser.add_argument("-k", default="", help="an extra pytest -k expression")
    parser.add_argument("--test-timeout", type=int, default=60, help="seconds per test")
    parser.add_argument("--target-minutes", type=float, default=45,
                        help="bound on one target's suite run (default 45)")
    parser.add_argument("--run-dir", type=Path,
                        help="where results go (default: var/conformance/<UTC time>)")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(TARGETS)}")

    kit = find_kit()
    ensure_venv(kit)
    groups = load_groups(kit)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = (args.run_dir or REPO / "var" / "conformance" / stamp).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    tree = describe_tree()
    (run_dir / "run.txt").write_text(
        f"date {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}\n{tree}\n"
        f"targets {','.join(targets)}\ngroups {args.groups}\n-k {args.k}\n"
        f"suite {kit.suite}\n")
    print(f"conformance: run directory {run_dir} ({tree.splitlines()[0]})", flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="encproxy-conformance-"))
    results = []
    try:
        for target in targets:
            results.append(run_target(target, kit, groups, work, run_dir, args))
    except Interrupted as exc:
        print(f"conformance: interrupted ({exc}); everything started is stopped",
              file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(report(results, groups, run_dir), end="")
    print(f"\nconformance: results in {run_dir}")
    return 0 if all(r.ran for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
