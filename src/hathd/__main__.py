"""``python -m hathd`` runs the CLI."""

from hathd.cli import main

main()
