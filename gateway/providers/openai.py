"""OpenAI chat completions, spoken to OpenAI and every OpenAI-compatible server.

A translator: Beluga's validated request in, the upstream HTTP call out, and
the upstream's answer (or failure) back as plain data and ApiErrors.
"""

from __future__ import annotations

import logging

import orjson
import requests

from catalog.selectors import RouteTarget
from gateway.errors import ApiError, InvalidRequest, RateLimited, UpstreamError
from gateway.protocols import with_route_params
from gateway.protocols.conversation import Usage
from gateway.providers.http import post, session_for, upstream_timeout
from gateway.streaming import stream_error_payload

logger = logging.getLogger("beluga.providers")


def chat_send(*, route: RouteTarget, body: dict, stream: bool, request_id: str) -> requests.Response:
    """POST the chat request upstream with the upstream's model name and credential.

    The customer's key never leaves Beluga: headers are built from scratch.
    Raises UpstreamError when the upstream cannot be reached or times out.
    """
    payload = with_route_params(route.params, body) if route.params else dict(body)
    payload["model"] = route.upstream_model
    if stream:
        # Ask for the usage chunk so a stream can be priced exactly.
        options = dict(payload.get("stream_options") or {})
        options["include_usage"] = True
        payload["stream_options"] = options
    accept = "text/event-stream" if stream else "application/json"
    return json_post(route, "/chat/completions", payload, request_id=request_id, stream=stream, accept=accept)


def json_post(
    route: RouteTarget,
    path: str,
    payload: dict,
    *,
    request_id: str,
    stream: bool = False,
    accept: str = "application/json",
) -> requests.Response:
    """POST `payload` as JSON to `{base_url}{path}` with the upstream's credential (headers built from scratch)."""
    headers = {"Content-Type": "application/json", "Accept": accept, "X-Request-Id": request_id}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    return guarded(
        lambda: post(
            session=session_for(upstream_id=route.upstream_id, base_url=route.base_url),
            url=f"{route.base_url}{path}",
            data=orjson.dumps(payload),
            headers=headers,
            stream=stream,
            timeout=upstream_timeout(route),
        )
    )


def guarded(call) -> requests.Response:
    """Run an upstream HTTP call; failures to reach the upstream become UpstreamError, with an
    `outcome` saying which (the routing layer retries all three on the next upstream)."""
    try:
        return call()
    except requests.exceptions.ConnectTimeout as exc:
        error = UpstreamError("The model provider could not be reached in time.", status=503)
        error.outcome = "connect_timeout"
        raise error from exc
    except requests.exceptions.Timeout as exc:
        error = UpstreamError("The model provider timed out.", status=502, code="upstream_timeout")
        error.outcome = "timeout"
        raise error from exc
    except requests.exceptions.RequestException as exc:
        error = UpstreamError("The model provider could not be reached.", status=503)
        error.outcome = "connect_error"
        raise error from exc


def usage_from(obj: dict) -> Usage | None:
    """The `usage` object of an OpenAI answer or chunk, with cached and reasoning tokens, if present."""
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    reasoning = completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        cached_input_tokens=cached if isinstance(cached, int) else 0,
        reasoning_tokens=reasoning if isinstance(reasoning, int) else 0,
    )


def completion_chars(obj: dict) -> int:
    """Characters of text and tool-call arguments in a chat completion, for estimates."""
    total = 0
    for choice in obj.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            total += len(message["content"])
        for call in message.get("tool_calls") or ():
            arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
            if isinstance(arguments, str):
                total += len(arguments)
    return total


def _upstream_message(content: bytes) -> tuple[str, str | None, str | None]:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "", None, None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or ""), error.get("param"), error.get("code")
    if isinstance(error, str):
        return error, None, None
    return "", None, None


def _without_secret(message: str, secret: str | None) -> str:
    return message.replace(secret, "***") if secret and secret in message else message


def _error_text(error) -> str:
    """The message of an OpenAI `error` member (an object, or a bare string as some servers send)."""
    if isinstance(error, dict):
        return str(error.get("message") or "")
    return error if isinstance(error, str) else ""


def error_in_answer(*, route: RouteTarget, data: dict) -> UpstreamError | None:
    """A 200 answer that holds an error instead of choices (some compatible servers answer so)."""
    if "error" not in data or isinstance(data.get("choices"), list):
        return None
    message = _without_secret(_error_text(data["error"]), route.api_key)
    return UpstreamError("The model provider answered with an error" + (f": {message}" if message else "."), status=502)


def error_from_response(
    *, route: RouteTarget, status: int, content: bytes, headers, not_found_is_the_request: bool = False
) -> ApiError:
    """Map an upstream's non-200 answer to what the client should see.

    A 404 means the route names a model (or a path) the provider does not
    serve: Beluga's configuration, not the caller's request, unless the
    request names things of its own (`not_found_is_the_request`: a Responses
    call's previous response).
    """
    message, param, code = _upstream_message(content)
    message = _without_secret(message, route.api_key)
    if status == 404 and not not_found_is_the_request:
        logger.warning("upstream %s answered 404 for %s: %s", route.upstream_name, route.upstream_model, message)
        return UpstreamError(
            "The model provider does not serve the model this route names (HTTP 404); "
            "the gateway's administrator has to fix the route.",
            status=502,
            code="upstream_model_not_found",
        )
    if status == 429:
        extra = {}
        if headers.get("Retry-After"):
            extra["Retry-After"] = headers["Retry-After"]
        return RateLimited(
            "The model provider is rate limiting requests; retry shortly." + (f" ({message})" if message else ""),
            code="upstream_rate_limited",
            headers=extra,
        )
    if status in (400, 404, 409, 413, 422):
        # The request itself was refused: the upstream's words help the caller fix it.
        return InvalidRequest(
            message or f"The model provider rejected the request (HTTP {status}).",
            param=param if isinstance(param, str) else None,
            code=code if isinstance(code, str) else None,
            status=413 if status == 413 else 400,
        )
    if status in (401, 403):
        # Beluga's own credential for the provider failed: not the caller's fault, and
        # the provider's message may describe the credential, so it is not relayed.
        return UpstreamError("The model provider refused Beluga's credentials.", status=502)
    if status >= 500:
        return UpstreamError(
            f"The model provider failed (HTTP {status}); retry shortly.", status=503 if status == 503 else 502
        )
    return UpstreamError(f"Unexpected answer from the model provider (HTTP {status}).", status=502)


class StreamRelay:
    """Rewrites an OpenAI stream's chunks for the client, one `data:` payload at a time.

    Most chunks differ from the last only in their delta, so after learning the
    upstream's exact `"model":"…"` bytes from the first chunk, the common chunk
    is relayed by one bytes replace instead of a JSON parse and re-serialisation
    (the parse cost most of a stream's CPU). Chunks that carry usage or an
    error, or that do not match, take the full parse.
    """

    def __init__(self, *, public_model: str, keep_usage: bool, cost_of=None, secret: str | None = None) -> None:
        self.public_model = public_model
        self.secret = secret  # the upstream credential, never relayed in an error's words
        self.keep_usage = keep_usage
        self.cost_of = cost_of  # Usage -> the cost fields added to the usage chunk the client gets
        self.replacement = b'"model":' + orjson.dumps(public_model)
        self.pattern: bytes | None = None
        self.usage: Usage | None = None
        self.error = False
        self.finish_reason = ""
        # Length of the text and tool-call arguments relayed so far, for the
        # estimate used when a stream ends before its usage chunk. Measured on
        # the JSON-encoded bytes in the fast path: exact for ASCII, an
        # overcount for escapes and non-ASCII, which estimates tolerate.
        self.delivered_chars = 0

    def relay(self, data: bytes) -> bytes | None:
        """The payload to send the client, or None to drop this one."""
        pattern = self.pattern
        if b'"finish_reason":"' in data:
            return self._relay_parsed(data)  # once a stream: the chunk that says why it stopped
        if pattern is not None and pattern in data and b'"usage":{' not in data and b'"error"' not in data:
            self.delivered_chars += _string_value_len(data, b'"content":"') + _string_value_len(data, b'"arguments":"')
            data = data.replace(pattern, self.replacement, 1)
            if not self.keep_usage:
                data = data.replace(b',"usage":null', b"", 1)
            return data
        return self._relay_parsed(data)

    def _relay_parsed(self, data: bytes) -> bytes | None:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None  # a keep-alive or comment sent as data
        if not isinstance(chunk, dict):
            return None
        choices = chunk.get("choices") or ()
        if "error" in chunk and not choices:
            # Relayed in Beluga's own words and type (as a failure before the stream
            # would be), keeping the provider's message without its credential.
            self.error = True
            message = _without_secret(_error_text(chunk["error"]), self.secret)
            return stream_error_payload(
                "The model provider failed during the stream" + (f": {message}" if message else ".")
            )
        found = usage_from(chunk)
        if found is not None:
            self.usage = found
            if self.keep_usage and self.cost_of is not None:
                chunk["usage"].update(self.cost_of(found))
        for choice in choices:
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str):
                self.delivered_chars += len(text)
            for call in delta.get("tool_calls") or ():
                arguments = (call.get("function") or {}).get("arguments")
                if isinstance(arguments, str):
                    self.delivered_chars += len(arguments)
        if not self.keep_usage:
            if not choices and found is not None:
                return None  # the usage chunk Beluga asked for; the client did not
            chunk.pop("usage", None)
        model = chunk.get("model")
        if isinstance(model, str):
            if self.pattern is None:
                self.pattern = b'"model":' + orjson.dumps(model)
            chunk["model"] = self.public_model
        return orjson.dumps(chunk)


def _string_value_len(data: bytes, key: bytes) -> int:
    """Byte length of the JSON string that follows `key` in `data` (0 when absent)."""
    start = data.find(key)
    if start < 0:
        return 0
    start += len(key)
    end = start
    while True:
        end = data.find(b'"', end)
        if end < 0:
            return 0
        backslashes = 0
        while data[end - 1 - backslashes] == 0x5C:  # an escaped quote is part of the string
            backslashes += 1
        if backslashes % 2 == 0:
            return end - start
        end += 1
