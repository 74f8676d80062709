"""Build hook: the wheel carries the repository's top-level jobs/ and templates/ as package data
(orchestrator/_builtin/), so an installed `orchestrate` has the same built-in specs and templates
as a clone. The repository layout stays the source: in a checkout core/paths.py reads them in place."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUILTIN = ("jobs", "templates")


class BuildPyWithBuiltins(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "orchestrator" / "_builtin"
        for name in BUILTIN:
            if (ROOT / name).is_dir():
                shutil.copytree(
                    ROOT / name, target / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                )


setup(cmdclass={"build_py": BuildPyWithBuiltins})
