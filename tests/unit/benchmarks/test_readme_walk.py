"""benchmarks/readme_walk.py: README's shell blocks split into commands, each timed as run, beside the
duration its comment states; the blocks README does not mean to be run are left out; a failing block fails
the walk. Checked on a small README whose commands sleep for known times."""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, os.fspath(ROOT / "benchmarks"))

import pytest  # noqa: E402

import readme_walk  # noqa: E402

README = """# a project

```bash
python3 -m venv .venv && . .venv/bin/activate   # the install: not run by the walk
```

```bash
# a first command that sleeps (1 s; AVX2: ~2 s)
X=0.3; sleep $X; echo slept $X
sleep 0.6 && \\
    echo done > out.txt                 # a continuation (takes 2 min)
```

```python
print("hello")
```
"""


def test_commands_and_their_stated_durations():
    block = readme_walk.FENCE.findall(README)[1][1]
    pairs = readme_walk.commands(block)
    assert [command.splitlines()[0] for _, command in pairs] == ["X=0.3; sleep $X; echo slept $X", "sleep 0.6 && \\"]
    assert [readme_walk.stated_seconds(description) for description, _ in pairs] == [1.0, 120.0]
    assert readme_walk.stated_seconds("no duration here") is None


@pytest.mark.slow  # real bash (and venv) processes
def test_the_walk_times_each_command_in_one_shell(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert readme_walk.main(["--readme", str(readme), "--json", str(tmp_path / "walk.json")]) == 0
    report = json.loads((tmp_path / "walk.json").read_text())
    rows = report["rows"]
    assert [row["command"] for row in rows] == ["X=0.3; sleep $X; echo slept $X", "sleep 0.6 && \\", 'print("hello")']
    assert 0.3 <= rows[0]["seconds"] < 0.6 + 0.3   # the variable set on the line before carried over
    assert 0.6 <= rows[1]["seconds"] < 1.5
    assert [row["block_exit_status"] for row in rows] == [0, 0, 0]
    assert [row["output"] for row in rows] == ["slept 0.3", "", "hello\n"]  # what each command printed
    assert "capability" in report["processor"] and report["cap"] is None


def test_a_failing_command_fails_the_walk(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("```bash\ntrue\nfalse   # (1 s)\necho never\n```\n")
    assert readme_walk.main(["--readme", str(readme)]) == 1
    assert "block failed (exit 1)" in capsys.readouterr().err


def test_skip_leaves_a_command_out(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert readme_walk.main(["--readme", str(readme), "--skip", "sleep 0.6", "--only", "sleep"]) == 0
    assert "sleep 0.6" not in capsys.readouterr().out


@pytest.mark.slow  # real bash (and venv) processes
def test_install_runs_the_install_block_in_a_fresh_clone_and_every_block_with_its_venv(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("```bash\npython3 -m venv .venv && . .venv/bin/activate\n```\n\n"
                      "```python\nimport sys; open('prefix.txt', 'w').write(sys.prefix)\n```\n\n"
                      "```bash\ntest -f pyproject.toml && grep -q clone/.venv prefix.txt   # in the clone, by its venv\n```\n")
    assert readme_walk.main(["--readme", str(readme), "--install", "--json", str(tmp_path / "walk.json")]) == 0
    report = json.loads((tmp_path / "walk.json").read_text())
    assert report["install"] is True
    assert [row["command"] for row in report["rows"]] == [
        "python3 -m venv .venv && . .venv/bin/activate", "import sys; open('prefix.txt', 'w').write(sys.prefix)",
        "test -f pyproject.toml && grep -q clone/.venv prefix.txt   # in the clone, by its venv"]
    assert all(row["block_exit_status"] == 0 for row in report["rows"])
