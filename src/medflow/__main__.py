"""``python -m medflow``: the CLI under the interpreter that runs it (used by the rules).

Under a workflow's job server (medflow.runtime.job_server) the command runs in a process
forked from it, with the heavy imports done; otherwise, or when the server cannot take it,
here.
"""

import sys

from medflow.runtime.job_client import run_via_server

status = run_via_server(sys.argv[1:])
if status is None:
    from medflow.cli import main

    status = main()
sys.exit(status)
