"""The exit statuses of `crmsync ctl`."""

EXIT_OK = 0  # done
EXIT_FAILED = 1  # the daemon refused, or part of the work failed
EXIT_USAGE = 2  # bad usage or configuration
EXIT_UNREACHABLE = 3  # the daemon cannot be reached
