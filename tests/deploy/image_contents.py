"""Run INSIDE the serving image by tests/deploy/test_image.py (its Python reads this file on stdin).

Prints two lists: the training/test packages importable in the image (kserve and fastapi: only
the tests read KServe's protocol models) and the compilers on its PATH. A serving image holds
neither, so the test expects ``[] []``.
"""

import importlib.util
import shutil

TRAINING_PACKAGES = ("pandas", "matplotlib", "arch", "pytest", "kserve", "fastapi")
COMPILERS = ("g++", "gcc", "c++")


def main() -> None:
    print(
        [name for name in TRAINING_PACKAGES if importlib.util.find_spec(name)],
        [tool for tool in COMPILERS if shutil.which(tool)],
    )


if __name__ == "__main__":
    main()
