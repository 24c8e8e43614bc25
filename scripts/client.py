"""Forecast many CSV files against a running TorchServe, with retries.

    python scripts/client.py FILE [FILE ...] [--url URL] [--model NAME[/VERSION]] [--concurrency N]
           [--format jsonl|csv] [--output PATH] [--plot DIR] [--token-file key_file.json]

The command of alm_ops.bulk (``--help``: every option); the code is there.
"""

from alm_ops.bulk import main

if __name__ == "__main__":
    raise SystemExit(main())
