"""The docs stay true: docs/cli.md matches the parsers, every "§N" the code cites exists in docs/spec.md,
and the README stays a short entry page whose links resolve."""

import importlib.util
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[2]


def _gen_cli():
    spec = importlib.util.spec_from_file_location("gen_cli", REPO / "docs" / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_doc_is_generated_from_the_parsers():
    gen = _gen_cli()
    assert (REPO / "docs" / "cli.md").read_text(encoding="utf-8") == gen.render(), \
        "docs/cli.md is out of step with the parsers; run: PYTHONPATH=. python docs/gen_cli.py"
    assert "--records_per_shard" in gen.render() and "--partition" in gen.render()


def test_every_spec_citation_resolves():
    sections = set(re.findall(r"^## (\d+)\. ", (REPO / "docs" / "spec.md").read_text(encoding="utf-8"), re.M))
    files = [p for d in ("pipeline", "transforms", "tests", "benchmarks", "docs") for p in (REPO / d).rglob("*")
             if p.suffix in (".py", ".md")]
    cited = {}
    for path in files:
        for number in re.findall(r"(?:SPEC|spec\.md) §(\d+)", path.read_text(encoding="utf-8")):
            cited.setdefault(number, path)
    assert cited, "no citation found: the pattern is wrong"
    missing = {n: str(p) for n, p in cited.items() if n not in sections}
    assert not missing, f"cited sections that docs/spec.md lacks: {missing}"


def test_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    for command in ("bash tasks.sh sample", "bash tasks.sh test"):
        assert command in text and command.split()[-1] in (REPO / "tasks.sh").read_text()
    links = set(re.findall(r"\]\(((?:docs|examples|benchmarks)/[^)#\s]+)", text))
    assert "docs/cli.md" in links and "docs/spec.md" in links
    broken = sorted(link for link in links if not (REPO / link).exists())
    assert not broken, broken
