"""Keeps Bazel-run entry points to the locked Python packages only.

Under Bazel the locked wheels come first on sys.path (from @pure_model_python_deps), but the
interpreter would still fall back to its own site-packages for anything missing there, and a
package found that way would make the output depend on the build machine. Dropping those
directories turns such a leak into an ImportError.
"""

import os
import site
import sys


def drop_system_site_packages():
    system = {os.path.realpath(p) for p in site.getsitepackages() + [site.getusersitepackages()]}
    sys.path[:] = [p for p in sys.path if os.path.realpath(p) not in system]
