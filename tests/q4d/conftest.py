"""Fixtures of the Queue4Download tests: the seed tree is generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from q4d.rig import make_seed_tree


@pytest.fixture(scope="session")
def seed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seedbox tree (served read-only by the FTP and SFTP servers of each test)."""
    root = tmp_path_factory.mktemp("seed")
    make_seed_tree(root)
    return root
