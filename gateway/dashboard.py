"""The customer's Generations page: their media tasks (images, videos, speech, transcriptions) with previews.

It lives in `gateway`, which owns MediaTask: `accounts` and `billing` never import `gateway`.
Files are linked only through Beluga's own signed, expiring URLs, made afresh on each render;
nothing the upstream said about its job (its id, its URLs) reaches the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from gateway.media.jobs import tasks_for_user
from gateway.media.storage import media_url
from gateway.models import MediaTask

TASKS_PER_PAGE = 25
MAX_THUMBNAILS = 4
PROMPT_CHARS = 80

Kind = MediaTask.Kind
KIND_GROUPS: dict[str, tuple[str, ...]] = {
    "images": (Kind.IMAGE,),
    "videos": (Kind.VIDEO,),
    "audio": (Kind.SPEECH, Kind.TRANSCRIPTION),
}
# How each kind's files are previewed; transcriptions only get their download links.
PREVIEWS = {Kind.IMAGE: "image", Kind.VIDEO: "video", Kind.SPEECH: "audio"}
# What the page shows of a task: the upstream's job id and poll URL are not even read.
SHOWN_FIELDS = (
    "public_id",
    "kind",
    "model",
    "status",
    "progress",
    "params",
    "results",
    "error_code",
    "error_message",
    "cost_micro_usd",
    "created_at",
)


class GenerationsFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label="Kind",
        required=False,
        choices=[("", "All"), ("images", "Images"), ("videos", "Videos"), ("audio", "Audio")],
    )
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "All"), *MediaTask.Status.choices])


@dataclass(frozen=True)
class MediaLink:
    url: str
    content_type: str
    size: int
    filename: str  # offered to the browser by the link's `download` attribute


@dataclass(frozen=True)
class Generation:
    task: MediaTask
    summary: str  # the prompt, shortened; for speech, the voice
    preview: str  # "image", "video", "audio" or ""
    files: list[MediaLink]

    @property
    def thumbnails(self) -> list[MediaLink]:
        return self.files[:MAX_THUMBNAILS]


def generations_for_user(*, user_id: int, kind: str = "", status: str = "") -> QuerySet[MediaTask]:
    """The account's tasks, newest first, of a kind group ("images", "videos", "audio") and status if given."""
    tasks = tasks_for_user(user_id=user_id, kinds=KIND_GROUPS.get(kind)).only(*SHOWN_FIELDS)
    return tasks.filter(status=status) if status else tasks


def generation_of(task: MediaTask, *, request: HttpRequest) -> Generation:
    """A task as the page shows it, with fresh signed links to its files."""
    files = []
    for number, result in enumerate(task.results or [], start=1):
        name = result.get("name") if isinstance(result, dict) else None
        if not name:
            continue
        extension = name[name.rfind(".") :] if "." in name.rsplit("/", 1)[-1] else ""
        files.append(
            MediaLink(
                url=media_url(name=name, request=request),
                content_type=str(result.get("content_type") or ""),
                size=int(result.get("size") or 0),
                filename=f"{task.public_id}-{number}{extension}",
            )
        )
    return Generation(task=task, summary=_summary(task), preview=PREVIEWS.get(task.kind, ""), files=files)


def _summary(task: MediaTask) -> str:
    params = task.params if isinstance(task.params, dict) else {}
    if task.kind == Kind.SPEECH:
        voice = params.get("voice")
        return f"voice: {voice}" if voice else ""
    prompt = params.get("prompt")
    if not isinstance(prompt, str):
        return ""
    prompt = " ".join(prompt.split())
    return prompt if len(prompt) <= PROMPT_CHARS else prompt[: PROMPT_CHARS - 1].rstrip() + "…"


@never_cache
@login_required
@require_safe
def generations(request: HttpRequest) -> HttpResponse:
    form = GenerationsFilterForm(request.GET)
    if form.is_valid():
        tasks = generations_for_user(user_id=request.user.id, **form.cleaned_data)
        status = 200
    else:
        tasks = MediaTask.objects.none()
        status = 400
    page = Paginator(tasks, TASKS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "generations": [generation_of(task, request=request) for task in page.object_list],
        "filtered": any(request.GET.get(name) for name in form.fields),
        "api_base": request.build_absolute_uri("/v1"),
    }
    return render(request, "gateway/generations.html", context, status=status)
