"""A pyftpdlib FTP server whose data connections are throttled:
``python ftp_server.py PORT ROOT USER PASSWORD BYTES_PER_SECOND``.

Read-only for USER. Each data connection sends at most BYTES_PER_SECOND (pyftpdlib's
``ThrottledDTPHandler.write_limit``), so a transfer is reliably slow enough to observe progress,
hit a timeout or be cancelled mid-way. Prints ``ready <port>`` once listening.
"""

from __future__ import annotations

import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler
from pyftpdlib.servers import FTPServer


def main(port: int, root: str, user: str, password: str, limit: int) -> None:
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, root, perm="elr")
    dtp = ThrottledDTPHandler
    dtp.write_limit = limit
    handler = FTPHandler
    handler.authorizer = authorizer
    handler.dtp_handler = dtp
    server = FTPServer(("127.0.0.1", port), handler)
    print(f"ready {server.address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
