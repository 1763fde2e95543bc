"""The model path of the image generator: a description becomes a package list.

The versioned prompt ``image_packages`` asks the model for the list through one tool
call (``submit_packages``); the list must pass the same strict check as one a person
types (image_recipe.py), and an unusable answer is sent back with the reason, once.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidInput
from gateway.llm.client import Completion, ModelClient, ModelError, TokenSink
from gateway.llm.prompts import load_prompt
from sandboxes.image_recipe import MAX_PACKAGES, parse_packages

PROMPT = "image_packages"
ROUNDS = 2
SUBMIT = {
    "type": "function",
    "function": {
        "name": "submit_packages",
        "description": "Submit the packages the sandbox image needs.",
        "parameters": {
            "type": "object",
            "properties": {
                "packages": {
                    "type": "array",
                    "items": {"type": "string"},
                    "maxItems": MAX_PACKAGES,
                    "description": "jq, python3-numpy, pip:NAME==X.Y.Z, npm:NAME@X.Y.Z",
                },
                "reason": {"type": "string", "description": "One line: why these."},
            },
            "required": ["packages"],
        },
    },
}


def _answer(completion: Completion) -> tuple[list[str], str]:
    for call in completion.tool_calls:
        if call.name == "submit_packages":
            args = call.parsed_arguments()
            packages = args.get("packages")
            if isinstance(packages, list) and all(isinstance(p, str) for p in packages):
                parse_packages(packages)  # InvalidInput says what is wrong
                return packages, str(args.get("reason") or "")[:500]
            raise InvalidInput("`packages` must be a list of strings")
    raise InvalidInput("answer by calling submit_packages")


async def packages_from_description(
    model: ModelClient, description: str, *, on_token: TokenSink | None = None
) -> dict[str, Any]:
    """``{"packages", "reason", "prompt"}`` the model chose for ``description``;
    :class:`ModelError` when it gives no usable list."""
    prompt = load_prompt(PROMPT)
    messages: list[dict[str, Any]] = prompt.messages(description=description, feedback="")
    reason = ""
    for _ in range(ROUNDS):
        completion = await model.complete(
            messages, tools=[SUBMIT], on_token=on_token, on_arguments=on_token
        )
        try:
            packages, why = _answer(completion)
            return {"packages": packages, "reason": why, "prompt": prompt.ref}
        except (InvalidInput, ModelError) as exc:
            reason = exc.message
        messages.append(completion.as_message())
        problem = f"That list cannot be used: {reason}. Submit a corrected one."
        for call in completion.tool_calls:  # every call gets its answer
            messages.append({"role": "tool", "tool_call_id": call.id, "content": problem})
        if not completion.tool_calls:
            messages.append({"role": "user", "content": problem})
    raise ModelError(f"the model did not choose a usable package list: {reason}")
