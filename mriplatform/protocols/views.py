from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render

from mriplatform.accounts.roles import Role, role_required
from mriplatform.audit.services import record
from mriplatform.protocols.forms import PARAM_PREFIX, ProtocolForm
from mriplatform.protocols.models import SCIENTIFIC_FIELDS, Protocol

VIEWERS = (Role.SITE_ADMIN, Role.COORDINATOR)


@role_required(*VIEWERS)
def protocol_list(request):
    protocols = Protocol.objects.filter(is_current=True).select_related("reference")
    return render(request, "protocols/list.html", {"protocols": protocols})


@role_required(*VIEWERS)
def protocol_detail(request, pk: int):
    protocol = get_object_or_404(Protocol.objects.select_related("reference"), pk=pk)
    versions = Protocol.objects.filter(lineage=protocol.lineage).order_by("-version")
    return render(request, "protocols/detail.html", {"protocol": protocol, "versions": versions})


@role_required(Role.SITE_ADMIN)
def protocol_create(request):
    form = ProtocolForm(request.POST or None, method=request.GET.get("method"))
    if request.method == "POST" and form.is_valid():
        protocol = form.save(commit=False)
        protocol.created_by = request.user
        protocol.save()
        record(
            request.user,
            "protocol.create",
            obj=protocol,
            request=request,
            details={"method": protocol.method, "params": protocol.params},
        )
        messages.success(request, f"Protocol {protocol} created.")
        return redirect("protocols:detail", pk=protocol.pk)
    return render(request, "protocols/form.html", {"form": form, "title": "New protocol"})


@role_required(Role.SITE_ADMIN)
def protocol_edit(request, pk: int):
    """Editing never changes a version: a valid form becomes the lineage's next version."""
    protocol = get_object_or_404(Protocol, pk=pk, is_current=True)
    form = ProtocolForm(
        request.POST or None,
        instance=Protocol(
            **{f: getattr(protocol, f) for f in SCIENTIFIC_FIELDS}, description=protocol.description
        ),
        method=request.GET.get("method"),
    )
    if request.method == "POST" and form.is_valid():
        changes = {f: form.cleaned_data[f] for f in form.Meta.fields if f in form.cleaned_data}
        changes["params"] = form.cleaned_data["params"]
        new = protocol.new_version(user=request.user, **changes)
        diff = {
            f: [str(getattr(protocol, f)), str(getattr(new, f))]
            for f in SCIENTIFIC_FIELDS
            if getattr(protocol, f) != getattr(new, f)
        }
        record(
            request.user,
            "protocol.new_version",
            obj=new,
            request=request,
            changes=diff,
            details={"previous": protocol.pk},
        )
        messages.success(request, f"Saved as {new}.")
        return redirect("protocols:detail", pk=new.pk)
    return render(
        request,
        "protocols/form.html",
        {
            "form": form,
            "title": f"Edit {protocol} (saves a new version)",
            "protocol": protocol,
            "param_prefix": PARAM_PREFIX,
        },
    )
