"""`make setup` as a clean machine runs it."""

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parent.parent / "Makefile"


def test_debian_packages_are_installed_without_their_recommends():
    """chromium's recommends pull in about 150 packages (systemd, cups) the tests never use."""
    text = MAKEFILE.read_text().replace("\\\n", " ")
    installs = re.findall(r"apt-get install[^;&|]*", text)
    assert installs, "the system target installs nothing with apt-get"
    for command in installs:
        assert "--no-install-recommends" in command, command
