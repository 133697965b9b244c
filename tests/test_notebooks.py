"""The notebooks in notebooks/ execute from top to bottom without an error."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_notebooks_the_readme_names_are_committed() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    named = {p.name for p in NOTEBOOKS if f"notebooks/{p.name}" in readme}
    assert named >= {"quickstart.ipynb", "cost_report.ipynb", "claude_and_openai.ipynb"}
    assert named == {p.name for p in NOTEBOOKS}  # and every committed one is named there


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # never the real API in tests
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # nor the real Anthropic API
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("text/html" in o.get("data", {}) for o in outputs)  # tidy HTML renders
    if path.stem == "cost_report":
        assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot, inline
