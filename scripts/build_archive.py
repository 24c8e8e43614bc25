"""Build the TorchServe archives (.mar) of archive_configs/ or of one checkpoint.

    python scripts/build_archive.py [--model NAME] [--require NAME] [--export-path DIR]
    python scripts/build_archive.py CKPT --name NAME [--version V] [--config YAML] [--archive-name FILE]

The command of alm_ops.archive (``--help``: every option); the code is there.
"""

from alm_ops.archive import main

if __name__ == "__main__":
    raise SystemExit(main())
