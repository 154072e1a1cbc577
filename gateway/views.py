from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse(status=501)


health = models_list = model_detail = chat_completions = api_not_found = _todo
