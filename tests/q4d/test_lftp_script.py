"""lftp script building and output parsing (sans-IO)."""

from __future__ import annotations

import pytest

from hathd.q4d import lftp

SITE = lftp.Site("sftp://seed.example:22", "fear", True, threads=5, segments=4)


def test_set_lines_come_before_open() -> None:
    lines = lftp.preamble(SITE)
    opened = next(i for i, line in enumerate(lines) if line.startswith("open "))
    assert opened == len(lines) - 1
    assert "set net:max-retries 3" in lines[:opened]
    assert "set net:timeout 30" in lines[:opened]
    assert "set net:reconnect-interval-base 5" in lines[:opened]
    assert "set sftp:auto-confirm yes" in lines[:opened]
    assert lines[opened] == 'open --env-password -u "fear" "sftp://seed.example:22"'


def test_no_password_means_no_env_password() -> None:
    site = lftp.Site("ftp://h", "u", False)
    assert lftp.preamble(site)[-1] == 'open -u "u" "ftp://h"'
    assert not any("sftp:" in line for line in lftp.preamble(site))


def test_quote_and_glob_escape() -> None:
    assert lftp.quote('a "b" \\c') == '"a \\"b\\" \\\\c"'
    assert lftp.glob_escape("x [1] *?") == "x \\[1\\] \\*\\?"


def test_transfer_forms() -> None:
    mirror = lftp.mirror_script(SITE, "/f/My Movie (2024)", "/m/.x")
    assert mirror.endswith(
        'mirror -c --parallel=5 --use-pget-n=4 --no-perms -v -- "/f/My Movie (2024)" "/m/.x"'
    )
    pget = lftp.pget_script(SITE, "/f/a b.mkv", "/m/.a b.mkv")
    assert pget.endswith('pget -c -n 4 "/f/a b.mkv" -o "/m/.a b.mkv"')
    probe = lftp.probe_script(SITE, "/f/br [x]")
    assert 'cls -dF -- "/f/br \\\\[x\\\\]"' in probe
    assert probe.endswith('du -bs -- "/f/br [x]"')


def test_parse_probe() -> None:
    out = "/files/My Movie (2024)/\n5000003\t/files/My Movie (2024)\n"
    assert lftp.parse_probe(out, "/files/My Movie (2024)") == lftp.Probe(True, 5000003)
    out = "/f/x.bin\n3\t/f/x.bin\n"
    assert lftp.parse_probe(out, "/f/x.bin") == lftp.Probe(False, 3)
    with pytest.raises(ValueError, match="did not list"):
        lftp.parse_probe("", "/f/x.bin")


def test_output_lines() -> None:
    assert lftp.transferring("Transferring file `Sub Dir/notes [x].txt'") == "Sub Dir/notes [x].txt"
    assert lftp.transferring("Making directory `Sub Dir'") is None
    assert lftp.is_permanent("Access failed: No such file or directory (/x)")
    assert not lftp.is_permanent("Login failed: Login incorrect")
