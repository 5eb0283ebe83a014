"""The README's worked example runs as written."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_python_example_runs_and_prints_what_the_readme_says(capsys):
    """The first python block of the README executes and ends with the ladder it shows."""
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "[('2.145', 28, 1)]"
    assert sum(line.startswith("Trade(") for line in out) == 2
