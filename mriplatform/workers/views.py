from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from mriplatform.accounts.roles import Role, role_required
from mriplatform.workers.services import refresh_workers, worker_rows


@never_cache
@role_required(Role.SITE_ADMIN)
def status_page(request):
    live = refresh_workers()
    return render(request, "workers/status.html", {"rows": worker_rows(live), "live": live})


@never_cache
@role_required(Role.SITE_ADMIN)
def status_json(request):
    live = refresh_workers()
    return JsonResponse({"workers": worker_rows(live)})
