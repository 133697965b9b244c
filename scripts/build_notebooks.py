"""Write the notebooks in notebooks/ from their cells here, and execute them in place.

    python scripts/build_notebooks.py [name ...]   # e.g. frameworks; all without a name

The committed notebooks carry the outputs of a real run; CI re-executes them
(tests/test_notebooks.py) so they cannot rot.
"""

from __future__ import annotations

import sys
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
        "# Spend budgets per UTC day: $1 for the workspace, and a tiny one for 'research',\n"
        "# to watch it hold (a miss once it is spent raises BudgetExceeded; hits still serve).\n"
        "cache = llmcache.Cache(\n"
        "    workspace='notebook',\n"
        "    tiers=['memory', f'disk://{folder}'],\n"
        "    budget_usd={'*': {'day': 1.00}, 'research': {'day': 0.00004}},\n"
        ")\n"
        "client = cache.wrap(raw, provider='openai')  # the local server imitates OpenAI",
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
        "refused = []\n"
        "for _ in range(60):\n"
        "    namespace, model = rng.choice([('research', 'gpt-4o-mini'), "
        "('support', 'gpt-4.1-mini')])\n"
        "    try:\n"
        "        with llmcache.options(namespace=namespace):\n"
        "            response = client.chat.completions.create(\n"
        "                model=model,\n"
        "                messages=[{'role': 'user', 'content': rng.choice(questions)}],\n"
        "                max_tokens=40,\n"
        "            )\n"
        "    except llmcache.BudgetExceeded as error:\n"
        "        refused.append(error)\n"
        "print(f'{len(refused)} new calls refused by a budget; the first said:')\n"
        "print(refused[0] if refused else '(none)')",
    ),
    ("code", "cache.budgets()  # each budget, what it allows and what is spent"),
    (
        "code",
        "llmcache.info(response)",
    ),
    ("code", "report = cache.report(by=('namespace', 'model'))\nreport"),
    ("code", "report.to_pandas()"),
    ("code", "figure = report.plot()  # cumulative money and time saved\nfigure"),
]


CLAUDE_AND_OPENAI = [
    (
        "md",
        "# Claude and OpenAI in one savings report\n\nWrap an `Anthropic` and an `OpenAI` "
        "client with one cache, send both the same questions with repeats, and read one "
        "report: calls avoided, money and time saved, by model, whichever provider served "
        "them. Without `ANTHROPIC_API_KEY` / `OPENAI_API_KEY` this runs against llmcache's "
        "local Anthropic- and OpenAI-compatible servers, priced as the real models would be.",
    ),
    (
        "code",
        "import os\nimport random\nimport tempfile\n\n"
        "from anthropic import Anthropic\nfrom openai import OpenAI\n\nimport llmcache\n"
        "from llmcache.testing import FakeAnthropicServer, FakeOpenAIServer\n\n"
        "%load_ext llmcache\n\n"
        "if os.environ.get('ANTHROPIC_API_KEY'):\n"
        "    claude_raw = Anthropic()\n    print('Claude: the real Anthropic API')\n"
        "else:\n"
        "    claude_server = FakeAnthropicServer(latency_per_token=0.002, base_latency=0.05)"
        ".start()\n"
        "    claude_raw = Anthropic(base_url=claude_server.base_url, api_key='local', "
        "max_retries=0)\n"
        "    print('Claude: the local Anthropic-compatible server at', claude_server.base_url)\n"
        "if os.environ.get('OPENAI_API_KEY'):\n"
        "    gpt_raw = OpenAI()\n    print('GPT: the real OpenAI API')\n"
        "else:\n"
        "    gpt_server = FakeOpenAIServer(latency_per_token=0.002, base_latency=0.05).start()\n"
        "    gpt_raw = OpenAI(base_url=gpt_server.base_url, api_key='local', max_retries=0)\n"
        "    print('GPT: the local OpenAI-compatible server at', gpt_server.base_url)\n\n"
        "folder = tempfile.mkdtemp(prefix='llmcache-two-providers-')\n"
        "cache = llmcache.Cache(workspace='notebook', tiers=['memory', f'disk://{folder}'])\n"
        "# The local servers imitate each provider: price their calls as its models'.\n"
        "claude = cache.wrap(claude_raw, provider='anthropic')\n"
        "gpt = cache.wrap(gpt_raw, provider='openai')",
    ),
    (
        "md",
        "The same questions to both providers, with repeats. Claude's system prompt carries a "
        "`cache_control` marker, so Anthropic's own prompt cache is used too (it bills cache "
        "reads at a tenth of the input price and writes at a premium); llmcache keys the "
        "request without the marker and prices each miss with its cache reads and writes.",
    ),
    (
        "code",
        "SYSTEM = 'You are a concise research assistant. Answer in two sentences.'\n"
        "questions = [\n"
        "    'Summarise retrieval-augmented generation in one sentence.',\n"
        "    'What is speculative decoding?',\n"
        "    'Explain KV-cache reuse briefly.',\n"
        "    'Give one example of prompt injection.',\n"
        "    'What should a model card contain?',\n"
        "]\n\n\n"
        "def ask(provider: str, model: str, question: str):\n"
        "    if provider == 'anthropic':\n"
        "        system = [{'type': 'text', 'text': SYSTEM, 'cache_control': {'type': "
        "'ephemeral'}}]\n"
        "        return claude.messages.create(\n"
        "            model=model, max_tokens=40, system=system,\n"
        "            messages=[{'role': 'user', 'content': question}],\n"
        "        )\n"
        "    return gpt.chat.completions.create(\n"
        "        model=model, max_tokens=40,\n"
        "        messages=[{'role': 'system', 'content': SYSTEM}, {'role': 'user', "
        "'content': question}],\n"
        "    )\n\n\n"
        "rng = random.Random(5)\n"
        "models = [('anthropic', 'claude-haiku-4-5'), ('anthropic', 'claude-sonnet-4-6'),\n"
        "          ('openai', 'gpt-4o-mini'), ('openai', 'gpt-4.1-mini')]\n"
        "for _ in range(80):\n"
        "    provider, model = rng.choice(models)\n"
        "    with llmcache.options(namespace='research'):\n"
        "        response = ask(provider, model, rng.choice(questions))\n"
        "llmcache.info(response)",
    ),
    (
        "md",
        "Streams are cached too: the SDK's `messages.stream(...)` helper records the live "
        "stream and replays it, with the same events, on the next identical call.",
    ),
    (
        "code",
        "for attempt in ('live', 'replay'):\n"
        "    with llmcache.options(namespace='research'), claude.messages.stream(\n"
        "        model='claude-sonnet-4-6', max_tokens=60,\n"
        "        messages=[{'role': 'user', 'content': questions[1]}],\n"
        "    ) as stream:\n"
        "        print(attempt, '->', stream.get_final_text())\n"
        "llmcache.info(stream)",
    ),
    ("code", "report = cache.report(by=('namespace', 'model'))\nreport"),
    (
        "code",
        "report.to_pandas()[\n"
        "    ['model', 'calls', 'hits', 'spent_usd', 'saved_usd', 'saved_input_tokens',\n"
        "     'saved_cache_read_tokens', 'saved_cache_write_tokens']\n"
        "]",
    ),
    ("code", "figure = report.plot()  # cumulative money and time saved, both providers\nfigure"),
]

FRAMEWORKS = [
    (
        "md",
        "# LangChain, LiteLLM and DSPy on one llmcache\n\n"
        "Each framework gets llmcache as its cache in one line, and every call they make "
        "lands in one savings report. Everything runs against a local OpenAI-compatible "
        "server (`llmcache.testing.FakeOpenAIServer`): no API key, no network.",
    ),
    (
        "code",
        "import os\n"
        "import tempfile\n\n"
        "# LiteLLM (also under DSPy) would fetch its price map from GitHub on import.\n"
        "os.environ.setdefault('LITELLM_LOCAL_MODEL_COST_MAP', 'True')\n\n"
        "import llmcache\n"
        "from llmcache.testing import FakeOpenAIServer\n\n"
        "server = FakeOpenAIServer(latency_per_token=0.002, base_latency=0.05).start()\n"
        "folder = tempfile.mkdtemp(prefix='llmcache-frameworks-')\n"
        "cache = llmcache.Cache(workspace='frameworks', tiers=['memory', f'disk://{folder}'])\n"
        "questions = ['What does a cache do?', 'Why are LLM calls slow?', 'What is a token?']",
    ),
    (
        "md",
        "**LangChain**: `set_llm_cache(LangChainCache(cache))` (here for one model, with "
        "`cache=`). The second pass over the same questions makes no request.",
    ),
    (
        "code",
        "from langchain_openai import ChatOpenAI\n"
        "from llmcache_langchain import LangChainCache\n\n"
        "chat = ChatOpenAI(\n"
        "    model='gpt-4o-mini', base_url=server.base_url, api_key='local', max_retries=0,\n"
        "    cache=LangChainCache(cache, namespace='langchain', provider='openai'),\n"
        ")\n"
        "before = server.requests\n"
        "for _ in range(2):\n"
        "    answers = [chat.invoke(q).content for q in questions]\n"
        "print('requests made:', server.requests - before, 'for', 2 * len(questions), 'calls')\n"
        "llmcache.last_info()",
    ),
    ("md", "**LiteLLM**: `litellm.cache = llmcache_litellm.cache(cache)`."),
    (
        "code",
        "import litellm\n"
        "import llmcache_litellm\n\n"
        "litellm.cache = llmcache_litellm.cache(cache, namespace='litellm')\n"
        "before = server.requests\n"
        "for _ in range(2):\n"
        "    for q in questions:\n"
        "        litellm.completion(\n"
        "            model='openai/gpt-4o-mini', api_base=server.base_url, api_key='local',\n"
        "            messages=[{'role': 'user', 'content': q}],\n"
        "        )\n"
        "print('requests made:', server.requests - before, 'for', 2 * len(questions), 'calls')\n"
        "litellm.cache = None  # DSPy below calls LiteLLM too: it has its own cache line\n"
        "llmcache.last_info()",
    ),
    ("md", "**DSPy**: `dspy.cache = llmcache_dspy.DSPyCache(cache)`, then a real program."),
    (
        "code",
        "import dspy\n"
        "import llmcache_dspy\n\n"
        "dspy.cache = llmcache_dspy.DSPyCache(cache, namespace='dspy')\n"
        "lm = dspy.LM('openai/gpt-4o-mini', api_base=server.base_url, api_key='local')\n"
        "qa = dspy.Predict('question -> answer')\n"
        "with dspy.context(lm=lm):\n"
        "    for attempt in ('first', 'second'):\n"
        "        before = server.requests\n"
        "        answers = [qa(question=q).answer for q in questions]\n"
        "        # A program may make more than one LM call per question (DSPy retries with\n"
        "        # another adapter when an answer does not parse): each is cached.\n"
        "        print(attempt, 'run: requests made:', server.requests - before)\n"
        "answers[0]",
    ),
    (
        "md",
        "One report across the three frameworks: each namespace is a framework here; the "
        "money and time each one's hits saved are priced from the usage of the calls they "
        "replaced.",
    ),
    ("code", "report = cache.report(by=('namespace', 'model'))\nreport"),
    (
        "code",
        "report.to_pandas()[['namespace', 'model', 'calls', 'hits', 'spent_usd', 'saved_usd']]",
    ),
    ("code", "server.stop()"),
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


def main(names: list[str]) -> None:
    """Build the named notebooks (all of them without a name)."""
    ROOT.mkdir(exist_ok=True)
    notebooks = (
        ("quickstart", QUICKSTART),
        ("cost_report", COST_REPORT),
        ("claude_and_openai", CLAUDE_AND_OPENAI),
        ("frameworks", FRAMEWORKS),
    )
    unknown = set(names) - {name for name, _ in notebooks}
    if unknown:
        raise SystemExit(
            f"no notebook named {sorted(unknown)}; they are {[n for n, _ in notebooks]}"
        )
    for name, cells in notebooks:
        if names and name not in names:
            continue
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
    main(sys.argv[1:])
