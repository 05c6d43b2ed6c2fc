"""The README's commands and code are the ones that work."""

import re
import subprocess
import sys
from pathlib import Path

from vaelab.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_first_two_commands_set_up_and_run_main_job_and_tests():
    first, second = (b.strip() for b in _blocks("bash")[:2])
    assert first.startswith("python3 -m venv .venv") and "pip install torch==2.13.0" in first
    assert first.endswith("vaelab train --out runs/quickstart")
    assert "pip install torch==2.13.0" in second and second.endswith("python -m pytest -q")
    ci = (REPO / ".ci" / "run").read_text()
    assert second in ci.splitlines(), "the CI must run the README's test command"


def test_python_snippet_runs(tmp_path):
    code = "\n".join(_blocks("python"))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


def test_vaelab_commands_in_readme_exist_with_their_options():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for line in re.findall(r"^vaelab [^\n]*", README, flags=re.M):
        words = line.split("#")[0].split()
        command = words[1]
        assert command in subparsers, line
        known = {o for a in subparsers[command]._actions for o in a.option_strings}
        for w in words[2:]:
            if w.startswith("-"):
                assert w in known, f"{w} in README line {line!r} is not an option"


def test_every_option_documents_its_default():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            if not action.option_strings or action.dest == "help" or action.required:
                continue
            assert action.help and "default" in action.help, (name, action.option_strings)
