"""Request settings: what a model merges into every call (AIModel.request_defaults / request_overrides).

A model's settings are written once, in words that mean the same thing for
every protocol, and the gateway states them in each upstream's own terms
(gateway/protocols/variants.py). So `claude-sonnet-4-6-thinking` is
`claude-sonnet-4-6` with `{"thinking_budget": 8192}` as a default, whatever
the client speaks and wherever the call is routed.

- Defaults apply where the client did not set the value itself.
- Overrides apply always: the client cannot change them (a '-nothinking'
  variant, priced as such, stays without thinking).

The keys (all optional):

    thinking          true | false     thinking on (at the upstream's default amount) or off
    thinking_budget   integer >= 0     tokens of thinking; 0 is off
    reasoning_effort  none | minimal | low | medium | high   (none is off)
    include_thoughts  true | false     show the thinking to the client (default true when thinking is on)
    max_tokens        integer >= 1     the answer's token cap
    temperature       0 to 2
    top_p             0 to 1
    top_k             integer >= 1

The thinking keys (the first four) go together: a mapping that has any of
them states the whole thinking setting, in place of the client's, so
include_thoughts comes with one of the other three.
"""

from __future__ import annotations

THINKING_KEYS = ("thinking", "thinking_budget", "reasoning_effort", "include_thoughts")
SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "top_k")
REQUEST_SETTING_KEYS = THINKING_KEYS + SAMPLING_KEYS
EFFORTS = ("none", "minimal", "low", "medium", "high")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_CHECKS = {
    "thinking": (lambda v: isinstance(v, bool), "true or false"),
    "thinking_budget": (lambda v: _is_int(v) and v >= 0, "a whole number of tokens, 0 or more (0 is off)"),
    "reasoning_effort": (lambda v: v in EFFORTS, "one of " + ", ".join(EFFORTS)),
    "include_thoughts": (lambda v: isinstance(v, bool), "true or false"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "a whole number of tokens, 1 or more"),
    "temperature": (lambda v: _is_number(v) and 0 <= v <= 2, "a number from 0 to 2"),
    "top_p": (lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "top_k": (lambda v: _is_int(v) and v >= 1, "a whole number, 1 or more"),
}


def request_settings_errors(value) -> list[str]:
    """What is wrong with a request_defaults / request_overrides value; empty when it is valid."""
    if not isinstance(value, dict):
        return ['must be a JSON object, e.g. {"thinking_budget": 8192}']
    errors = []
    for key, item in value.items():
        check = _CHECKS.get(key)
        if check is None:
            errors.append(f"unknown setting {key!r} (known: {', '.join(REQUEST_SETTING_KEYS)})")
        elif not check[0](item):
            errors.append(f"{key} must be {check[1]}")
    if "include_thoughts" in value and not any(key in value for key in THINKING_KEYS[:3]):
        errors.append("include_thoughts goes with thinking, thinking_budget or reasoning_effort")
    if value.get("thinking") is False and any(
        value.get(key) not in (None, 0, "none") for key in ("thinking_budget", "reasoning_effort")
    ):
        errors.append("thinking is false: leave out thinking_budget and reasoning_effort")
    return errors
