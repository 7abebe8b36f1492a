"""The docs hold together: README.md stays short; every relative link and #anchor in README.md
and docs/ resolves; every `python -m X` and `python file.py --flag` they show names a module or
file that exists and flags its argument parser defines. Fast and offline: the flags are read from
the sources (string constants such as "--image-dir" in the module and the project modules it
imports), nothing is imported or run."""
import ast
import importlib.util
import os
import re
import shlex
from functools import lru_cache
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
FLAG = re.compile(r"--[A-Za-z0-9][\w-]*")
PYTHON = re.compile(r"(^|/)python(\d+(\.\d+)?)?$")
SEPARATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}


def doc_files() -> List[str]:
    files = [os.path.join(ROOT, "README.md")]
    for folder, _, names in sorted(os.walk(os.path.join(ROOT, "docs"))):
        files += [os.path.join(folder, name) for name in sorted(names) if name.endswith(".md")]
    return files


def split_markdown(text: str) -> Tuple[List[Tuple[str, str]], List[str]]:
    """([(language, code) of each fenced block], the lines outside them)."""
    blocks, prose, current, language = [], [], None, ""
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if current is None:
                current, language = [], line.strip()[3:].strip().lower()
            else:
                blocks.append((language, "\n".join(current)))
                current = None
        elif current is not None:
            current.append(line)
        else:
            prose.append(line)
    return blocks, prose


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text lower-cased, punctuation but hyphens
    and underscores dropped, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> Set[str]:
    """Every heading's slug, duplicates numbered as GitHub numbers them."""
    seen: Dict[str, int] = {}
    for line in split_markdown(text)[1]:
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            if count:
                seen.setdefault(f"{slug}-{count}", 1)
    return set(seen)


def link_problems(text: str, path: str) -> List[str]:
    """Relative links (and images) of a markdown file whose file or #anchor does not exist."""
    prose = "\n".join(split_markdown(text)[1])
    prose = INLINE_CODE.sub("", prose)
    problems = []
    for target in LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        name = f"{os.path.relpath(path, ROOT)}: link {target!r}"
        if not file_part:  # an anchor in this very file
            if anchor not in anchors(text):
                problems.append(f"{name}: no heading with the anchor #{anchor} here")
            continue
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
        if not resolved.startswith(ROOT + os.sep) and resolved != ROOT:
            problems.append(f"{name} leaves the repository")
        elif not os.path.exists(resolved):
            problems.append(f"{name}: no such file {os.path.relpath(resolved, ROOT)}")
        elif anchor:
            if not resolved.endswith(".md"):
                problems.append(f"{name}: an anchor into a file that is not markdown")
            elif anchor not in anchors(open(resolved, encoding="utf-8").read()):
                problems.append(f"{name}: no heading with the anchor #{anchor} in {os.path.relpath(resolved, ROOT)}")
    return problems


def command_lines(text: str) -> Iterator[str]:
    """The shell command lines a markdown file shows: every line of its fenced blocks (but
    Python, TOML and plain output), `\\` continuations joined, and every inline code span."""
    blocks, prose = split_markdown(text)
    for language, code in blocks:
        if language in ("python", "py", "toml", "text", "json"):
            continue
        for line in code.replace("\\\n", " ").splitlines():
            yield line
    for span in INLINE_CODE.findall("\n".join(prose)):
        yield " ".join(span.split())


def tokens_of(line: str) -> List[str]:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:  # an unclosed quote: a `python -c '...` over several lines
        tokens = line.split("#")[0].split()
    # [--flag VALUE] marks an option in the docs' usage lines
    return [token.strip("[]") for token in tokens]


def commands_in(line: str) -> Iterator[Tuple[str, str, List[str]]]:
    """(kind, name, flags) for each program of this project a command line runs: ("module", X, flags)
    for `python -m X`, ("file", F, flags) for `python F.py`, or for `F.py --flag ...` without the
    interpreter (torchrun's script, an inline `demo.py --tta`). Flags are the `--name` tokens that
    follow, up to the next program or separator."""
    found: List[Tuple[str, str, List[str], bool]] = []  # kind, name, flags, run by python itself
    current = None
    tokens = tokens_of(line)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in SEPARATORS:
            current = None
        elif PYTHON.search(token) and tokens[i + 1:i + 2] == ["-c"]:
            break
        elif PYTHON.search(token) and tokens[i + 1:i + 2] == ["-m"]:
            current = ("module", tokens[i + 2], [], True) if i + 2 < len(tokens) else None
            found += [current] if current else []
            i += 2
        elif token.endswith(".py") and not token.startswith("-"):
            current = ("file", token, [], i > 0 and PYTHON.search(tokens[i - 1]) is not None)
            found.append(current)
        elif current and FLAG.match(token):
            current[2].append(FLAG.match(token).group(0))
        i += 1
    for kind, name, flags, by_python in found:
        if by_python or flags:  # a file merely named in the prose (`eval.py`) is not a command
            yield kind, name, flags


def module_file(module: str) -> Optional[str]:
    """The file `python -m module` runs, when the module is this project's."""
    base = os.path.join(ROOT, *module.split("."))
    for candidate in (base + ".py", os.path.join(base, "__main__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def external_module_exists(module: str) -> bool:
    """Whether an installed module (pip, venv, torch.distributed.launch) exists, found on disk
    without importing it."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        return False
    if not rest:
        return True
    for location in spec.submodule_search_locations or []:
        base = os.path.join(location, *rest)
        if os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__main__.py")):
            return True
    return False


@lru_cache(maxsize=None)
def project_imports(path: str) -> Tuple[str, ...]:
    """The files of this project's modules that `path` imports."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    files = []
    for name in names:
        base = os.path.join(ROOT, *name.split("."))
        for candidate in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(candidate) and not candidate.startswith(os.path.join(ROOT, "tests", "test_")):
                files.append(candidate)
    return tuple(files)


def flag_constants(node: ast.AST) -> Set[str]:
    return {n.value for n in ast.walk(node)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and FLAG.fullmatch(n.value)}


def takes_a_parser(function: ast.AST) -> bool:
    """A helper that adds options to a parser it is given (`def add_device(parser): ...`)."""
    arguments = function.args.args + function.args.kwonlyargs
    return any(a.arg in ("parser", "group") or "ArgumentParser" in ast.dump(a.annotation or ast.Constant(None))
               for a in arguments)


@lru_cache(maxsize=None)
def defined_flags(path: str) -> frozenset:
    """The "--flag" strings of the program in `path`: every such string constant in the file (where
    its argparse definitions live, however written: a call, a loop); those of helpers that take a
    parser in the project modules it imports; and, for a file that defines no option itself (a
    module left at an old path that imports the moved one), those of the modules it imports."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    flags = flag_constants(tree)
    shim = "add_argument" not in ast.unparse(tree)
    for imported in project_imports(path):
        if shim:
            flags |= defined_flags(imported)
            continue
        for node in ast.walk(ast.parse(open(imported, encoding="utf-8").read(), imported)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and takes_a_parser(node):
                flags |= flag_constants(node)
    return frozenset(flags)


def command_problems(text: str, path: str) -> List[str]:
    """Commands of a markdown file that name a module or file that does not exist, or a flag that
    its program does not define."""
    problems = []
    where = os.path.relpath(path, ROOT)
    for line in command_lines(text):
        for kind, name, flags in commands_in(line):
            if kind == "module":
                source = module_file(name)
                if source is None:
                    if not external_module_exists(name):
                        problems.append(f"{where}: `python -m {name}`: no such module")
                    continue
            else:
                source = os.path.join(ROOT, name)
                if not os.path.isfile(source):
                    problems.append(f"{where}: `{name}`: no such file in the repository")
                    continue
            unknown = sorted(set(flags) - defined_flags(source))
            if unknown:
                problems.append(f"{where}: `{name}` has no {', '.join(unknown)} (in {line.strip()[:120]!r})")
    return problems


def read(path: str) -> str:
    return open(path, encoding="utf-8").read()


def test_the_readme_stays_short():
    lines = read(os.path.join(ROOT, "README.md")).count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/ (at most {README_MAX_LINES})"


def test_every_relative_link_and_anchor_resolves():
    problems = [p for path in doc_files() for p in link_problems(read(path), path)]
    assert not problems, "\n".join(problems)


def test_every_command_names_a_module_and_flags_that_exist():
    problems = [p for path in doc_files() for p in command_problems(read(path), path)]
    assert not problems, "\n".join(problems)


def test_the_checks_find_the_docs_commands():
    """The command check sees the docs' commands at all (a parser that found none would pass)."""
    found = {(kind, name) for path in doc_files() for line in command_lines(read(path))
             for kind, name, _ in commands_in(line)}
    assert {("file", "demo.py"), ("file", "main.py"), ("module", "utils.evaluation.evaluate"),
            ("module", "networks.export")} <= found


SYNTHETIC = """# Title

## A section: with `code`

[fine](#a-section-with-code) [fine too](README.md) [web](https://example.com/x#y)
[gone](no/such/file.md) [bad anchor](#no-such-heading) [far](../../outside.md)
![picture](missing.png)

```bash
.venv/bin/python demo.py --config c.toml --no-such-flag \\
    --also-not-a-flag
python -m utils.evaluation.evaluate --pred-dir P [--not-there X]
python -m no.such.module --x
python -m pip install -r requirements.txt
python missing_script.py --x
```

Inline: `demo.py --imaginary` and `python -m networks.export --opset 20`.
"""


def test_the_checks_fail_on_broken_links_and_unknown_flags():
    path = os.path.join(ROOT, "SYNTHETIC.md")  # resolved relative to the root; never written
    links = link_problems(SYNTHETIC, path)
    assert len(links) == 4, links
    assert any("no/such/file.md" in p for p in links) and any("#no-such-heading" in p for p in links)
    assert any("leaves the repository" in p for p in links) and any("missing.png" in p for p in links)
    commands = command_problems(SYNTHETIC, path)
    unknown = {flag for p in commands if "has no" in p
               for flag in re.search(r"has no ([-\w, ]+) \(in", p).group(1).split(", ")}
    # across a \ continuation, in [--optional] form and in an inline span; the defined flags pass
    assert unknown == {"--no-such-flag", "--also-not-a-flag", "--not-there", "--imaginary"}, commands
    missing = [p for p in commands if "has no" not in p]
    assert len(missing) == 2 and "no.such.module" in missing[0] and "missing_script.py" in missing[1], commands
    assert len(commands) == 5  # pip, an installed module, is not a problem


@pytest.mark.parametrize("heading, slug", [
    ("Fine-tune gca-dist.pth on your photos and alphas in 4 commands",
     "fine-tune-gca-distpth-on-your-photos-and-alphas-in-4-commands"),
    ("Other benchmarks: AIM-500, AM-2K, P3M-500, SIM", "other-benchmarks-aim-500-am-2k-p3m-500-sim"),
    ("Parity with MMagic's code", "parity-with-mmagics-code"),
    ("GCA-Matting (`model.family = \"gca-matting\"`, the default)", "gca-matting-modelfamily--gca-matting-the-default"),
])
def test_slugs_are_githubs(heading, slug):
    assert github_slug(heading) == slug


def test_a_module_left_at_an_old_path_has_the_flags_of_the_one_it_imports(tmp_path):
    shim = tmp_path / "old_path.py"
    shim.write_text("from utils.evaluation.evaluate import main\n\nif __name__ == '__main__':\n    main()\n")
    assert {"--pred-dir", "--alpha-dir", "--trimap-dir"} <= defined_flags(str(shim))
    own = tmp_path / "own_parser.py"
    own.write_text("import argparse\nfrom utils.evaluation.evaluate import main\n"
                   "parser = argparse.ArgumentParser()\nparser.add_argument('--mine')\n")
    assert defined_flags(str(own)) == {"--mine"}  # another program's options are not its own


def test_the_readme_picture_is_what_its_command_makes(tmp_path):
    """docs/development.md's command for docs/toy-example.png runs and makes a picture of the
    committed one's size, small enough to commit."""
    pytest.importorskip("pymatting", reason="the picture's cutouts need requirements-cutout.txt")
    from utils.toy_images import photo_folder
    try:
        photo_folder()
    except SystemExit as e:
        pytest.skip(str(e))
    from PIL import Image

    from docs.readme_picture import main
    made = tmp_path / "toy-example.png"
    assert main(["--out", str(made)]) == 0
    committed = os.path.join(ROOT, "docs", "toy-example.png")
    assert Image.open(made).size == Image.open(committed).size
    assert os.path.getsize(committed) < 200 * 1024
