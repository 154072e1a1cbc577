"""A model's request settings (catalog/request_settings.py), applied to each call.

A '-thinking' or '-nothinking' model is a variant: its base model's routes,
with settings merged into every request (AIModel.request_defaults, where the
client set nothing; AIModel.request_overrides, over what it set). They are
stated once, in protocol-neutral words, and reach each upstream in its own
terms:

- A translated call gets them in its Conversation (`conversation_with_settings`),
  before the upstream's writer runs: the writer's own rules then apply (an
  Anthropic budget below max_tokens, temperature 1 with thinking, an effort for
  OpenAI, a thinking level for Gemini 3).
- A call that is not translated (the same protocol on both sides) gets them in
  its body, through the upstream protocol's `settings_into_body`; the client's
  own field for a setting is what "set by the client" means there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import orjson

from catalog.request_settings import THINKING_KEYS
from gateway.protocols.conversation import Conversation, ThinkingConfig

SAMPLING = ("max_tokens", "temperature", "top_p", "top_k")


@dataclass(frozen=True, slots=True)
class RequestSettings:
    """Settings a model states; None: not stated (the client's value, or the upstream's default)."""

    thinking: ThinkingConfig | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, name) is not None for name in ("thinking", *SAMPLING))


NONE = RequestSettings()


def settings_of(values: dict) -> RequestSettings:
    """The settings of an AIModel.request_defaults / request_overrides value (validated by the catalog)."""
    if not values:
        return NONE
    thinking = None
    if any(key in values for key in THINKING_KEYS):
        effort = values.get("reasoning_effort")
        if values.get("thinking") is False or values.get("thinking_budget") == 0 or effort == "none":
            thinking = ThinkingConfig.off()
        else:
            thinking = ThinkingConfig(
                budget_tokens=values.get("thinking_budget"),
                effort=effort,
                include_thoughts=values.get("include_thoughts", True),
            )
    return RequestSettings(thinking, *(values.get(name) for name in SAMPLING))


def model_settings(model) -> tuple[RequestSettings, RequestSettings]:
    """(defaults, overrides) of a catalog ModelInfo."""
    return settings_of(model.request_defaults), settings_of(model.request_overrides)


def settings_merged(
    defaults: RequestSettings, overrides: RequestSettings, *, client_sets
) -> dict[str, ThinkingConfig | int | float]:
    """The settings a call takes from the model, by name: every override, and each default whose
    setting the client left unset (`client_sets(name)` says whether it set it)."""
    merged = {}
    for name in ("thinking", *SAMPLING):
        forced = getattr(overrides, name)
        if forced is not None:
            merged[name] = forced
        else:
            default = getattr(defaults, name)
            if default is not None and not client_sets(name):
                merged[name] = default
    return merged


def conversation_with_settings(conversation: Conversation, model) -> Conversation:
    """The conversation with the model's settings merged in (a copy; the client's is kept for retries)."""
    defaults, overrides = model_settings(model)
    if not defaults and not overrides:
        return conversation
    merged = settings_merged(defaults, overrides, client_sets=lambda name: getattr(conversation, name) is not None)
    return dataclasses.replace(conversation, **merged) if merged else conversation


def openai_chat_settings_into_body(
    body: dict, defaults: RequestSettings, overrides: RequestSettings, *, route, dropped: list[str]
) -> dict:
    """A model's request settings in an OpenAI chat request the client wrote itself (the fast path):
    a copy with a default where the body lacks the field, an override over it.

    OpenAI's reasoning models take an effort (a budget becomes one, as the chat
    writer does it) and `max_completion_tokens`; other OpenAI-compatible servers
    take `max_tokens`, and thinking is not sent to them (named in `dropped`).
    Off is sent as no reasoning_effort: the model's own default."""
    if not defaults and not overrides:
        return body  # most models: nothing to merge, on the hottest path
    from gateway.protocols.openai_chat import EFFORT_FOR_BUDGET, REASONING_MODEL

    def client_sets(name: str) -> bool:
        if name == "thinking":
            return "reasoning_effort" in body
        if name == "max_tokens":
            return "max_tokens" in body or "max_completion_tokens" in body
        return name in body

    merged = settings_merged(defaults, overrides, client_sets=client_sets)
    if not merged:
        return body
    body = dict(body)
    reasoning_model = bool(REASONING_MODEL.match(route.upstream_model))
    for name, value in merged.items():
        if name == "top_k":
            dropped.append("top_k")  # Chat Completions has no top_k
        elif name == "max_tokens":
            body.pop("max_tokens", None)
            body.pop("max_completion_tokens", None)
            body["max_completion_tokens" if reasoning_model else "max_tokens"] = value
        elif name != "thinking":
            body[name] = value
        else:
            body.pop("reasoning_effort", None)
            if value.is_off:
                continue
            if not reasoning_model:
                dropped.append("thinking")
            elif value.effort:
                body["reasoning_effort"] = value.effort
            elif value.budget_tokens is not None:
                limits = EFFORT_FOR_BUDGET
                body["reasoning_effort"] = next((e for limit, e in limits if value.budget_tokens <= limit), "high")
    return body


def request_with_settings(outbound, *, model, route) -> None:
    """An UpstreamRequest of a call that is not translated (the client's own protocol), with the
    model's settings in its body, by the upstream protocol's settings_into_body; what could not be
    honoured goes to its `dropped`."""
    defaults, overrides = model_settings(model)
    if not defaults and not overrides:
        return
    # Imported here: those modules import this one for RequestSettings.
    from gateway.protocols import anthropic_messages_upstream, gemini_upstream, openai_responses_upstream

    writers = {
        "anthropic": anthropic_messages_upstream.settings_into_body,
        "gemini": gemini_upstream.settings_into_body,
        "openai-responses": openai_responses_upstream.settings_into_body,
    }
    body = orjson.loads(outbound.body)
    writers[route.kind](body, defaults, overrides, route=route, dropped=outbound.dropped)
    outbound.body = orjson.dumps(body)
