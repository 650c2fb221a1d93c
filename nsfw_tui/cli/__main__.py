"""`python -m nsfw_tui.cli`: the same command as the installed `nsfw-tui`."""

from .root import main

main()
