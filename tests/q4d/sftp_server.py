"""A real SFTP server (asyncssh) for the tests: ``python sftp_server.py PORT ROOT USER PASSWORD``.

Password authentication only; the SFTP root is chrooted to ROOT, so absolute paths in events
resolve under it. Prints ``ready <port>`` on stdout once listening; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import asyncssh


class _Server(asyncssh.SSHServer):
    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self.user and password == self.password


async def main(port: int, root: str, user: str, password: str) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen(
        "127.0.0.1",
        port,
        server_host_keys=[key],
        server_factory=lambda: _Server(user, password),
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root.encode()),
        allow_scp=False,
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"ready {bound}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
