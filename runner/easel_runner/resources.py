"""What the runner process itself uses."""

import os
import resource


def resident_bytes():
    """The process's resident set size now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        # No procfs (macOS): the peak resident set, which is bytes there.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
