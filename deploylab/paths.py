"""Where deploylab finds its shipped assets and writes its results."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The repository's data/ folder (a source checkout or an editable install); a user can
# point elsewhere with DEPLOYLAB_DATA.
DATA_DIR = Path(os.environ.get("DEPLOYLAB_DATA", PACKAGE_DIR.parent / "data"))
REPO_DIR = PACKAGE_DIR.parent


def output_dir(*parts: str) -> Path:
    """Folder for results and artifacts (created): ``$DEPLOYLAB_OUT`` or ``build/results``.

    ``make course`` points it at ``build/course/results`` so executed notebooks and their
    JSON/CSV/PNG results end up side by side.
    """
    base = Path(os.environ.get("DEPLOYLAB_OUT", REPO_DIR / "build" / "results"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
