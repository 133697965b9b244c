"""Write the notebooks in notebooks/ from their cells here, and execute them in place.

    python scripts/build_notebooks.py

The committed notebooks carry the outputs of a real run; CI re-executes them
(tests/test_notebooks.py) so they cannot rot.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent / "notebooks"

QUICKSTART = [
    (
        "md",
        "# llmcache quickstart\n\nDecorate a function, see a miss then a hit, use per-call "
        "options, and invalidate a namespace. Everything here runs locally: no server, no "
        "API key.",
    ),
    (
        "code",
        "import tempfile\nimport time\n\nimport llmcache\n\n"
        "%load_ext llmcache\n\n"
        "# Memory first, then an embedded disk tier that survives kernel restarts.\n"
        "folder = tempfile.mkdtemp(prefix='llmcache-quickstart-')\n"
        "cache = llmcache.Cache(workspace='quickstart', tiers=['memory', f'disk://{folder}'])\n"
        "llmcache.set_default_cache(cache)  # what %llmcache and @llmcache.cached use\n"
        "cache",
    ),
    (
        "code",
        "@cache.cached(namespace='research', ttl=3600)\n"
        "def ask(question: str, model: str = 'gpt-4o-mini') -> str:\n"
        "    time.sleep(0.5)  # stands in for a slow, paid LLM call\n"
        "    return f'[{model}] an answer to: {question}'\n\n"
        "started = time.perf_counter()\n"
        "answer = ask('Why cache LLM calls?')\n"
        "print(f'{(time.perf_counter() - started) * 1000:.1f} ms')\n"
        "llmcache.info(answer)",
    ),
    (
        "md",
        "Run the same call again: it is a hit from the memory tier, in microseconds. "
        "Re-running this cell, or restarting the kernel (the disk tier), hits too: keys "
        "never depend on cell ids or notebook paths.",
    ),
    (
        "code",
        "started = time.perf_counter()\n"
        "answer = ask('Why cache LLM calls?')\n"
        "print(f'{(time.perf_counter() - started) * 1000:.3f} ms')\n"
        "llmcache.info(answer)",
    ),
    (
        "md",
        "## Per-call options\n\n`bypass`, `refresh`, `no_store`, `ttl`, `max_age`, "
        "`namespace` and `sample` apply to the calls inside the block.",
    ),
    (
        "code",
        "with llmcache.options(refresh=True):\n"
        "    ask('Why cache LLM calls?')          # calls again and stores the fresh result\n"
        "with llmcache.options(bypass=True):\n"
        "    ask('Why cache LLM calls?')          # neither reads nor writes the cache\n"
        "with llmcache.options(sample=2):\n"
        "    ask('Why cache LLM calls?')          # a second sample, cached on its own key\n"
        "ask.cache_info()",
    ),
    (
        "md",
        "## Invalidate\n\nBumping a namespace's generation makes all of its entries "
        "unreachable at once (O(1)); other processes follow within a second.",
    ),
    (
        "code",
        "cache.invalidate(namespace='research')\n"
        "answer = ask('Why cache LLM calls?')\n"
        "llmcache.info(answer).hit",
    ),
    ("code", "%llmcache stats"),
    ("code", "cache.health()"),
]

COST_REPORT = [
    (
        "md",
        "# What did the cache save?\n\nWrap an OpenAI client, run a workload with repeats, "
        "and read the report: calls avoided, money and time saved, by namespace and model. "
        "Without `OPENAI_API_KEY` this runs against llmcache's local OpenAI-compatible "
        "server, priced as the real models would be.",
    ),
    (
        "code",
        "import os\nimport random\nimport tempfile\n\n"
        "from openai import OpenAI\n\nimport llmcache\nfrom llmcache.testing import "
        "FakeOpenAIServer\n\n%load_ext llmcache\n\n"
        "if os.environ.get('OPENAI_API_KEY'):\n"
        "    raw = OpenAI()\n    print('using the real OpenAI API')\n"
        "else:\n"
        "    server = FakeOpenAIServer(latency_per_token=0.002, base_latency=0.05).start()\n"
        "    raw = OpenAI(base_url=server.base_url, api_key='local', max_retries=0)\n"
        "    print('using the local OpenAI-compatible server at', server.base_url)\n\n"
        "folder = tempfile.mkdtemp(prefix='llmcache-report-')\n"
        "cache = llmcache.Cache(workspace='notebook', tiers=['memory', f'disk://{folder}'])\n"
        "client = cache.wrap(raw)",
    ),
    (
        "code",
        "questions = [\n"
        "    'Summarise retrieval-augmented generation in one sentence.',\n"
        "    'What is speculative decoding?',\n"
        "    'Explain KV-cache reuse briefly.',\n"
        "    'Give one example of prompt injection.',\n"
        "    'What should a model card contain?',\n"
        "]\n"
        "rng = random.Random(3)\n"
        "for _ in range(60):\n"
        "    namespace, model = rng.choice([('research', 'gpt-4o-mini'), "
        "('support', 'gpt-4.1-mini')])\n"
        "    with llmcache.options(namespace=namespace):\n"
        "        response = client.chat.completions.create(\n"
        "            model=model,\n"
        "            messages=[{'role': 'user', 'content': rng.choice(questions)}],\n"
        "            max_tokens=40,\n"
        "        )\n"
        "llmcache.info(response)",
    ),
    ("code", "report = cache.report(by=('namespace', 'model'))\nreport"),
    ("code", "report.to_pandas()"),
    ("code", "figure = report.plot()  # cumulative money and time saved\nfigure"),
]


def _notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source in cells:
        maker = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        notebook.cells.append(maker(source))
    return notebook


def main() -> None:
    ROOT.mkdir(exist_ok=True)
    for name, cells in (("quickstart", QUICKSTART), ("cost_report", COST_REPORT)):
        notebook = _notebook(cells)
        NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT)}},
        ).execute()
        nbformat.write(notebook, ROOT / f"{name}.ipynb")
        print("wrote", ROOT / f"{name}.ipynb")


if __name__ == "__main__":
    main()
