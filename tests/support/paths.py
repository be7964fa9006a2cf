"""Where things are: the repository's root and the tests' own data files (tests/support/data/)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
