"""Print the Python version and the versions of the pinned tools the test run uses."""
from __future__ import annotations

import platform
from importlib.metadata import version

TOOLS = ("ansible-core", "pyroute2", "pytest", "ansible-lint", "molecule")

print("python %s; %s" % (platform.python_version(), ", ".join("%s %s" % (tool, version(tool)) for tool in TOOLS)))
