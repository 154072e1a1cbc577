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
    if not model.request_defaults and not model.request_overrides:
        return conversation
    defaults, overrides = model_settings(model)
    merged = settings_merged(defaults, overrides, client_sets=lambda name: getattr(conversation, name) is not None)
    return dataclasses.replace(conversation, **merged) if merged else conversation


def _body_writers() -> dict:
    """Each upstream kind's settings_into_body (imported here: those modules import this one)."""
    from gateway.protocols import anthropic_messages_upstream, gemini_upstream, openai_chat, openai_responses_upstream

    return {
        "openai": openai_chat.settings_into_body,
        "anthropic": anthropic_messages_upstream.settings_into_body,
        "gemini": gemini_upstream.settings_into_body,
        "openai-responses": openai_responses_upstream.settings_into_body,
    }


def body_with_settings(body: dict, *, model, route) -> tuple[dict, list[str]]:
    """A body in the upstream's own protocol that the client wrote (a call that is not translated),
    with the model's settings written in by the protocol's settings_into_body: a copy when they
    change it (the client's is kept for the next attempt), and what could not be honoured."""
    if not model.request_defaults and not model.request_overrides:
        return body, []  # most models, on the hottest path
    defaults, overrides = model_settings(model)
    dropped: list[str] = []
    body = dict(body)  # the writers replace top-level fields only
    _body_writers()[route.kind](body, defaults, overrides, route=route, dropped=dropped)
    return body, dropped


def request_with_settings(outbound, *, model, route) -> None:
    """An UpstreamRequest of the same protocol as the client's, with the model's settings in its body."""
    if not model.request_defaults and not model.request_overrides:
        return
    body, dropped = body_with_settings(orjson.loads(outbound.body), model=model, route=route)
    outbound.body = orjson.dumps(body)
    outbound.dropped.extend(dropped)
