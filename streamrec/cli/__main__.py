"""`python -m streamrec.cli`: how the demo starts its trainer and server."""

from streamrec.cli import run

run()
