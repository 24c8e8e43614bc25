"""Model lifecycle over TorchServe's management API.

    python scripts/lifecycle.py register|scale|set-default|unregister|list|describe ... [--url URL]
           [--token-file key_file.json]

The command of alm_ops.lifecycle (``--help``: every option); the code is there.
"""

from alm_ops.lifecycle import main

if __name__ == "__main__":
    raise SystemExit(main())
