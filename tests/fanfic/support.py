"""Helpers of the fanfic tests: a restartable dovecot, real MIME story-alert mails, an HTTP
receiver for Apprise's ``json://`` notifications, a job context for handler tests, and a look
into a Calibre library through the real ``calibredb``.

dovecot runs unprivileged: as root, its login and mail processes
run as ``nobody`` (dovecot refuses uid 0 for both), so the rig lives in a world-traversable
folder under /tmp with the mail home owned by ``nobody``.
"""

from __future__ import annotations

import email.message
import email.utils
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
import trustme
from imapclient import IMAPClient

from fakes.apprise_receiver import Receiver as Receiver
from hathd.engine.api import Job, JobSpec, JobState, Submitted
from hathd.fanfic.config import ImapConfig

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
CALIBREDB = shutil.which("calibredb") or "calibredb"

DOVECOT_CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {rig}/run
state_dir = {rig}/state
instance_name = hathd-test-{port}
log_path = {rig}/dovecot.log
ssl = yes
ssl_cert = <{rig}/server.pem
ssl_key = <{rig}/server.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {rig}/passwd
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={rig}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class Dovecot:
    """A dovecot instance on 127.0.0.1:``port`` with one user; restartable on the same port
    and maildir."""

    rig: Path
    port: int
    tls_port: int = 0
    user: str = "fanfic"
    password: str = "pw"
    proc: subprocess.Popen[bytes] | None = None

    def imap_config(self, password_file: Path, **overrides: Any) -> ImapConfig:
        """An :class:`ImapConfig` for this server (plain text, password from a file whose
        first line is the password: the second line must be ignored)."""
        password_file.write_text(self.password + "\nrotated monthly; see the wiki\n")
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "tls": "none",
            "username": self.user,
            "password_file": str(password_file),
            "idle_check": 1.0,
            "reconnect_min": 0.2,
            "reconnect_max": 1.0,
            "poll_interval": 0.5,
        }
        values.update(overrides)
        return ImapConfig(**values)

    async def start(self) -> None:
        """Start dovecot and wait until it greets on its port."""
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; waited in a thread
            [DOVECOT, "-F", "-c", str(self.rig / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        with trio.fail_after(30):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.port)
                except OSError:
                    assert self.proc.poll() is None, self.log()
                    await trio.sleep(0.05)
                    continue
                greeting = await stream.receive_some(200)
                await stream.aclose()
                if greeting.startswith(b"* OK"):
                    return

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop dovecot (SIGTERM, or ``sig``) and wait for its processes to exit."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        await trio.to_thread.run_sync(proc.wait)
        # its children (imap, auth, login) leave with the master; wait until the port is free
        with trio.fail_after(30):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.port)
                except OSError:
                    return
                await stream.aclose()
                await trio.sleep(0.05)

    def log(self) -> str:
        """dovecot's log so far."""
        path = self.rig / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self) -> IMAPClient:
        """A new logged-in client with INBOX selected (blocking; for test set-up)."""
        c = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=30)
        c.login(self.user, self.password)
        c.select_folder("INBOX")
        return c

    async def append(self, raw: bytes) -> None:
        """APPEND one message to INBOX (unseen)."""

        def run() -> None:
            c = self.client()
            try:
                c.append("INBOX", raw)
            finally:
                c.logout()

        await trio.to_thread.run_sync(run)

    async def flags(self) -> dict[int, tuple[bytes, ...]]:
        """UID → flags of every message in INBOX."""

        def run() -> dict[int, tuple[bytes, ...]]:
            c = self.client()
            try:
                uids = c.search("ALL")
                if not uids:
                    return {}
                return {int(k): tuple(v[b"FLAGS"]) for k, v in c.fetch(uids, ["FLAGS"]).items()}
            finally:
                c.logout()

        return await trio.to_thread.run_sync(run)


def story_mail(
    urls: list[str],
    *,
    subject: str = "Story alert",
    html: bool = True,
    sender: str = "alerts",
    attachment: int = 0,
) -> bytes:
    """A real multipart/alternative story-alert mail linking ``urls`` in both parts; with
    ``attachment`` bytes, a multipart/mixed mail with a binary attachment of that size."""
    msg = email.message.EmailMessage()
    msg["From"] = f"{sender}@example.org"
    msg["To"] = "fanfic@example.org"
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = email.utils.make_msgid()
    msg.set_content("New chapters:\n" + "\n".join(f"  {u}" for u in urls) + "\n")
    if html:
        links = "".join(f'<li><a href="{u}">Story {i}</a></li>' for i, u in enumerate(urls))
        msg.add_alternative(f"<html><body><ul>{links}</ul></body></html>", subtype="html")
    if attachment:
        msg.make_mixed()
        msg.add_attachment(
            os.urandom(attachment),
            maintype="application",
            subtype="octet-stream",
            filename="big.bin",
        )
    return msg.as_bytes()


def calibre_books(library: Path) -> list[dict[str, Any]]:
    """Every book of the library (``calibredb list --for-machine``), blocking."""
    out = subprocess.run(
        [
            CALIBREDB,
            "list",
            "--for-machine",
            "--fields",
            "title,identifiers,formats,last_modified",
            "--with-library",
            str(library),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CALIBRE_CONFIG_DIRECTORY": str(library.parent / "calibre-config")},
    )
    assert out.returncode == 0, f"calibredb list: status {out.returncode}: {out.stderr}"
    books: list[dict[str, Any]] = json.loads(out.stdout or "[]")
    return books


def write_dovecot_config(server: Dovecot, user: str, group: str) -> None:
    """passwd, a trustme certificate (``ca.pem`` signs ``server.pem``) and dovecot.conf."""
    rig = server.rig
    (rig / "passwd").write_text(f"{server.user}:{{PLAIN}}{server.password}\n")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(rig / "server.pem")
    )
    ca.cert_pem.write_to_path(str(rig / "ca.pem"))
    (rig / "dovecot.conf").write_text(
        DOVECOT_CONF.format(
            rig=rig, port=server.port, tls_port=server.tls_port, user=user, group=group
        )
    )


def make_rig() -> tuple[Path, str, str]:
    rig = Path(tempfile.mkdtemp(prefix="hathd-dovecot-"))
    rig.chmod(0o755)
    for sub in ("run", "state", "home"):
        (rig / sub).mkdir()
    if os.getuid() == 0:
        user, group = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        os.chown(rig / "home", pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
    else:
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
    return rig, user, group


@attrs.define
class FakeContext:
    """A :class:`~hathd.engine.api.JobContext` for running a handler without the engine."""

    job: Job
    tmp_dir: Path
    messages: list[str] = attrs.field(factory=list)

    def progress(self, done: int, total: int | None = None, *, message: str | None = None) -> None:
        if message:
            self.messages.append(message)


def fanfic_job(url: str, site: str = "test1.com", *, attempts: int = 1, **params: Any) -> Job:
    """A running ``fanfic`` job for ``url``."""
    return Job(
        id=f"job-{abs(hash((url, attempts))) % 10**8}",
        kind="fanfic",
        target=url,
        domain=site,
        state=JobState.RUNNING,
        dedupe_key=url,
        attempts=attempts,
        params=dict(params),
    )


@attrs.define
class RecordingEngine:
    """A stand-in :class:`~hathd.engine.api.EngineAPI` for watcher tests: keeps submitted
    jobs in memory with the engine's de-duplication rule (same kind and key while active)."""

    jobs: list[Job] = attrs.field(factory=list)
    lanes: dict[str, int] = attrs.field(factory=dict)
    changed: trio.Event = attrs.field(factory=trio.Event)

    def register(self, kind: str, handler: Any, **kw: Any) -> None:
        pass

    def add_lane(self, pattern: str, *, concurrency: int = 1, **kw: Any) -> None:
        self.lanes[pattern] = concurrency

    async def get(self, job_id: str) -> Job | None:
        for job in self.jobs:
            if job.id == job_id:
                return job
        return None

    async def find_active(self, kind: str, dedupe_key: str) -> Job | None:
        for job in self.jobs:
            if job.kind == kind and job.dedupe_key == dedupe_key:
                return job
        return None

    async def submit(self, spec: JobSpec) -> Submitted:
        return (await self.submit_many([spec]))[0]

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[Submitted]:
        out: list[Submitted] = []
        for spec in specs:
            existing = await self.find_active(spec.kind, spec.dedupe_key or "")
            if existing is not None:
                out.append(Submitted(existing, False))
                continue
            job = Job(
                id=str(len(self.jobs) + 1),
                kind=spec.kind,
                target=spec.target,
                domain=spec.domain,
                state=JobState.QUEUED,
                source=spec.source,
                source_id=spec.source_id,
                dedupe_key=spec.dedupe_key,
                retry_preset=spec.retry_preset,
            )
            self.jobs.append(job)
            out.append(Submitted(job, True))
        self.changed.set()
        self.changed = trio.Event()
        return out

    async def wait_jobs(self, count: int, timeout: float = 60.0) -> list[Job]:
        """Wait until at least ``count`` jobs were submitted."""
        with trio.fail_after(timeout):
            while len(self.jobs) < count:
                await self.changed.wait()
        return list(self.jobs)
