"""``python -m crossrank``: the ``crossrank`` command."""

from crossrank.cli import main

main()
