"""The README is a short user guide whose commands run, and the docs it links to exist.

* README.md has at most 180 lines.
* README.md and docs/*.md name no tracker issue ("issue 12") and no commit id.
* Every ``python SCRIPT.py`` the README shows names a script that exists; every ``make TARGET`` a Makefile target.
* Every command in the code blocks of README.md and docs/*.md gets past argparse: flags known, values of the right
  type and choice, required flags given (the script's own checks after argparse, e.g. "no such file", are not run).
* Every relative link in README.md and docs/*.md resolves to a file, and every ``#anchor`` to one of its headings.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 180
USER_DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]

ISSUE_REF = re.compile(r"\bissues?\s+#?\d", re.IGNORECASE)
COMMIT_ID = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
SCRIPT_REF = re.compile(r"\bpython3?\s+((?:[\w.-]+/)*[\w.-]+\.py)\b")
MAKE_REF = re.compile(r"^\s*make\s+([\w-]+)", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def code_blocks(text: str) -> list[str]:
    """The lines of fenced (```) and indented (4 spaces) code blocks, continuation lines (``\\``) joined."""
    lines, in_fence, previous_blank = [], False, True
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence or (raw.startswith("    ") and (previous_blank or (lines and lines[-1] is not None))):
            lines.append(raw.strip())
        else:
            lines.append(None)
        previous_blank = not raw.strip()
    joined, current = [], ""
    for line in lines:
        if line is None:
            current = ""
            continue
        current = f"{current} {line.removesuffix(chr(92)).strip()}".strip()
        if not line.endswith("\\"):
            joined.append(current)
            current = ""
    return [line for line in joined if line]


def shown_commands() -> list[tuple[str, str, list[str]]]:
    """``(document, script, argv)`` for every ``python SCRIPT.py ...`` line in the code blocks of the user docs."""
    commands = []
    for path in USER_DOCS:
        for line in code_blocks(path.read_text(encoding="utf-8")):
            if not re.match(r"python3?\s", line):
                continue
            tokens = shlex.split(line, comments=True)
            if len(tokens) >= 2 and tokens[0] in ("python", "python3") and tokens[1].endswith(".py"):
                commands.append((path.relative_to(ROOT).as_posix(), tokens[1], tokens[2:]))
    return commands


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file (duplicates numbered as GitHub does)."""
    seen: dict[str, int] = {}
    result = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match and not in_fence:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            result.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return result


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; the user guide keeps to {MAX_LINES} (details go to docs/)"


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_issue_numbers_or_commit_ids(path):
    text = path.read_text(encoding="utf-8")
    issues = [m.group(0) for m in ISSUE_REF.finditer(text)]
    commits = [m.group(0) for m in COMMIT_ID.finditer(text)]
    assert not issues, f"{path.name} refers to tracker issues: {issues}"
    assert not commits, f"{path.name} names commit ids: {commits}"


def test_checks_catch_what_they_look_for():
    assert ISSUE_REF.search("see issue 7") and ISSUE_REF.search("Issues #3, 5") and not ISSUE_REF.search("an issue")
    assert COMMIT_ID.search("at commit 580ccf5") and not COMMIT_ID.search("35887 faces, 2,728 values, fee, added")
    blocks = code_blocks("text\n\n    python a.py --x 1 \\\n        --y 2\n\n```bash\nmake demo   # c\n```\n")
    assert blocks == ["python a.py --x 1 --y 2", "make demo   # c"]
    assert slug("Converting: `convert_fer2013.py`") == "converting-convert_fer2013py"
    assert slug("Gradient clipping: the 2016 code clipped at 5.0") == "gradient-clipping-the-2016-code-clipped-at-50"


def test_readme_scripts_exist():
    text = README.read_text(encoding="utf-8")
    scripts = sorted(set(SCRIPT_REF.findall(text)))
    assert "train.py" in scripts and "predict.py" in scripts, "the README shows no commands: check SCRIPT_REF"
    missing = [s for s in scripts if not (ROOT / s).is_file()]
    assert not missing, f"README.md shows commands of scripts that do not exist: {missing}"


def test_readme_make_targets_exist():
    targets = set(MAKE_REF.findall("\n".join(code_blocks(README.read_text(encoding="utf-8")))))
    assert {"demo", "test"} <= targets, f"the README shows the make commands {sorted(targets)}"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    defined = set(re.findall(r"^([\w-]+)\s*:(?!=)", makefile, re.MULTILINE))
    assert not targets - defined, f"README.md shows make targets the Makefile lacks: {sorted(targets - defined)}"


class _Parsed(Exception):
    """Raised right after argparse accepted the command line, before the script's own checks."""


def _load_script(document: str, script: str):
    path = ROOT / script
    if not path.is_file():
        pytest.fail(f"{document} shows `python {script}`, which does not exist")
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("document,script,argv", shown_commands(),
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_shown_command_parses(document, script, argv, monkeypatch, capsys):
    module = _load_script(document, script)
    assert hasattr(module, "parse_args"), f"{script} has no parse_args(argv)"
    original = argparse.ArgumentParser.parse_args

    def accept(self, args=None, namespace=None):
        original(self, args, namespace)  # exits with status 2 on an unknown flag, bad type or choice, missing flag
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", accept)
    monkeypatch.setattr(sys, "argv", [script, *argv])
    try:
        module.parse_args(argv)
    except _Parsed:
        return
    except SystemExit as exc:
        error = capsys.readouterr().err.strip().splitlines()[-1:] or [""]
        pytest.fail(f"{document}: `python {script} {shlex.join(argv)}` does not parse (exit {exc.code}): {error[0]}")
    pytest.fail(f"{script}: parse_args returned without calling argparse")


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_resolve(path):
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.name})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"
