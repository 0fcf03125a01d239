"""Golden chat prompts: SmolLM2-Instruct's chat template (as `uorch model
import-gguf` writes it into tokenizer_config.json) rendered by Jinja2 the
way Hugging Face transformers' `apply_chat_template` renders it (an
immutable sandboxed environment with trim_blocks and lstrip_blocks,
`raise_exception`, one user message, add_generation_prompt=True).

Needs only jinja2; run by hand after set-up:

    python3 -m venv /tmp/jinja && /tmp/jinja/bin/pip install jinja2
    /tmp/jinja/bin/python tests/golden/make_chat_golden.py

Output (committed): tests/golden/chat_template.json.
"""
import json
import os

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(ROOT, ".uorch", "models", "smollm2-135m-instruct", "tokenizer_config.json")


def raise_exception(message):
    raise TemplateError(message)


def token(v):
    return v if isinstance(v, str) else (v or {}).get("content", "")


config = json.load(open(CONFIG))
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.globals["raise_exception"] = raise_exception
template = env.from_string(config["chat_template"])
users = [
    "Question: What is the user's favorite genre? Options: Action, Comedy, Drama.\nAnswer:",
    "A user's movie history, oldest first: Toy Story (1995) [Animation, Children's, Comedy] rated 4/5.\n"
    "Question: Which movie will the user choose next?\nAnswer:",
    "quotes \" ' and braces {{ }} {% %} stay as they are",
]
cases = [
    {
        "user": u,
        "rendered": template.render(
            messages=[{"role": "user", "content": u}],
            add_generation_prompt=True,
            bos_token=token(config.get("bos_token")),
            eos_token=token(config.get("eos_token")),
        ),
    }
    for u in users
]
out = {"produced_by": "jinja2 " + __import__("jinja2").__version__, "chat_template": config["chat_template"], "cases": cases}
with open(os.path.join(HERE, "chat_template.json"), "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"wrote {len(cases)} cases")
