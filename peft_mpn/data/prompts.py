"""How a question is put to a model: prompt formats, applied to every prompt of a request at once.

A base model asked a bare question ("Which company built the Boeing 747?") continues the text: it writes a
sentence, another question, or a paragraph. Asked in a question-answer format that it has seen answered on one
line, it writes a short answer and a line break, so what it *generates* can be judged (see
`peft_mpn.metrics.generation`). A format is a template with `{prompt}` once; `PROMPT_FORMATS` names the
built-in ones and `FAMILY_FORMATS` picks one per model family (`config.model_type`). A template may also hold
`{answer}` once, after `{prompt}`: what follows it is how an answer ends in that format (a line break in the
question-answer formats), and it is appended to every target, so an edit learns to end its answer the way the
format does, and the teacher-forced reading checks that ending too.

Apply a format to the requests before editing *and* judging (`EditRequest.with_prompt_format`, or
`format_requests`), so that the edit is trained on the prompts it is judged on. `peft-mpn bench` does this with
`--prompt-format` and records the template in its results.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .requests import EditRequest, EditRequestError

#: Built-in prompt formats by name. `raw`: the prompt as the data gives it (the teacher-forced readings before
#: generation was judged). `qa`: one question-answer line. `qa-2shot`: two answered questions first, which a
#: small base model needs before it answers briefly and ends the line (Gemma-3-270M writes sentences after
#: `qa` alone, and short answers ended by a line break after `qa-2shot`).
PROMPT_FORMATS: dict[str, str] = {
    "raw": "{prompt}",
    "qa": "Q: {prompt}\nA: {answer}\n",
    "qa-2shot": "Q: What is the capital of France?\nA: Paris\nQ: Who wrote Hamlet?\nA: William Shakespeare\n"
    "Q: {prompt}\nA: {answer}\n",
}

#: The format each model family (`config.model_type`) answers in; `"default"` for the others.
FAMILY_FORMATS: dict[str, str] = {"default": "qa-2shot"}


def check_template(template: str) -> str:
    """`template` if it holds `{prompt}` exactly once, `{answer}` at most once after it, and no other field."""
    if not isinstance(template, str) or template.count("{prompt}") != 1:
        raise EditRequestError(
            f"A prompt format needs '{{prompt}}' exactly once, got {template!r}; e.g. 'Q: {{prompt}}\\nA:' or one "
            f"of {sorted(PROMPT_FORMATS)}."
        )
    if template.count("{answer}") > 1 or template.find("{answer}") not in (
        -1,
        *range(template.find("{prompt}"), len(template)),
    ):
        raise EditRequestError(f"The prompt format {template!r} may hold '{{answer}}' once, after '{{prompt}}'.")
    try:
        template.format(prompt="", answer="")
    except (KeyError, IndexError, ValueError) as error:
        raise EditRequestError(
            f"The prompt format {template!r} has a field other than {{prompt}} and {{answer}} ({error}); double other "
            "braces: '{{{{'."
        ) from None
    return template


def split_template(template: str) -> tuple[str, str]:
    """(the prompt part, the answer ending) of a checked template: `"Q: {prompt}\\nA: {answer}\\n"` gives
    `("Q: {prompt}\\nA:", "\\n")`; a template without `{answer}` has no ending."""
    prompt, found, end = check_template(template).partition("{answer}")
    return (prompt.rstrip(" ") if found else prompt), end.format() if found else ""


def resolve_prompt_format(name_or_template: str | None = None, model: Any = None) -> str:
    """The template for a format name (`PROMPT_FORMATS`), a template itself, or None / `"family"`: `model`'s family's.

    Raises:
        EditRequestError: an unknown name, or a template without exactly one `{prompt}`.
    """
    if name_or_template in (None, "family"):
        base = getattr(model, "get_base_model", lambda: model)()
        family = getattr(getattr(base, "config", None), "model_type", None) or ""
        name_or_template = FAMILY_FORMATS.get(family, FAMILY_FORMATS["default"])
    if name_or_template in PROMPT_FORMATS:
        return PROMPT_FORMATS[name_or_template]
    if "{prompt}" not in name_or_template:
        raise EditRequestError(
            f"Unknown prompt format {name_or_template!r}: name one of {sorted(PROMPT_FORMATS)} or 'family', or give a "
            "template with {prompt}."
        )
    return check_template(name_or_template)


def format_prompt(template: str, prompt: str) -> str:
    """`prompt` put in `template`'s prompt part (see `split_template`)."""
    return split_template(template)[0].format(prompt=prompt)


def format_requests(requests: Iterable[EditRequest], template: str) -> list[EditRequest]:
    """`EditRequest.with_prompt_format(template)` of each request (classification requests unchanged)."""
    return [request.with_prompt_format(template) for request in requests]


__all__ = [
    "FAMILY_FORMATS",
    "PROMPT_FORMATS",
    "check_template",
    "split_template",
    "format_prompt",
    "format_requests",
    "resolve_prompt_format",
]
