"""Write the runnable TorchServe config from config.properties.

    python scripts/serve_config.py OUT [--model-store DIR] [--listen HOST] [--set key=value ...]
    python scripts/serve_config.py --models      # model names that load_models starts with

The command of alm_ops.serve_config (``--help``: every option); the code is there.
"""

from alm_ops.serve_config import main

if __name__ == "__main__":
    raise SystemExit(main())
