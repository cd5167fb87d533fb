from django.contrib import messages
from django.http import HttpResponseBadRequest, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from mriplatform.accounts.roles import Role, role_required
from mriplatform.audit.services import record
from mriplatform.protocols.external_models import (
    ExternalModelError,
    add_external_model,
    sync_external_models,
)
from mriplatform.protocols.forms import PARAM_PREFIX, ExternalModelForm, ProtocolForm
from mriplatform.protocols.models import SCIENTIFIC_FIELDS, ExternalModel, Protocol
from recon_engine.registry import get_method

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


def _warn_if_timing_differs(request, protocol: Protocol) -> None:
    differences = protocol.timing_differences()
    if differences:
        listed = ", ".join(f"{label} {ours} vs {theirs}" for label, ours, theirs in differences)
        messages.warning(
            request,
            f"Sequence timing differs from the reference {protocol.reference} ({listed}): "
            "the time reduction compares two sequences, not only the acceleration.",
        )


@role_required(Role.SITE_ADMIN)
@require_GET
def method_fields(request):
    """The parameter fields of one method (HTML fragment), swapped in when the method changes."""
    method = request.GET.get("method", "")
    sync_external_models()
    try:
        get_method(method)
    except KeyError:
        # Plain text and no echo of the input: this answer must never carry markup.
        return HttpResponseBadRequest("unknown method", content_type="text/plain")
    form = ProtocolForm(method=method)
    return render(request, "protocols/_method_params.html", {"form": form})


@role_required(Role.SITE_ADMIN)
def protocol_create(request):
    sync_external_models()
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
        _warn_if_timing_differs(request, protocol)
        return redirect("protocols:detail", pk=protocol.pk)
    return render(request, "protocols/form.html", {"form": form, "title": "New protocol"})


@role_required(Role.SITE_ADMIN)
def protocol_edit(request, pk: int):
    """Editing never changes a version: a valid form becomes the lineage's next version."""
    protocol = get_object_or_404(Protocol, pk=pk, is_current=True)
    sync_external_models()
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
        _warn_if_timing_differs(request, new)
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


@role_required(*VIEWERS)
def external_models(request):
    """The site's own networks; site administrators upload new ones here."""
    form = None
    if request.user.is_superuser or request.user.has_role(Role.SITE_ADMIN):
        form = ExternalModelForm(request.POST or None, request.FILES or None)
    elif request.method == "POST":
        return HttpResponseForbidden("only site administrators add models")
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        matrix = (data["matrix_h"], data["matrix_w"]) if data["matrix_h"] else None
        try:
            model = add_external_model(
                data["file"],
                name=data["name"],
                fmt=data["format"],
                user=request.user,
                title=data["title"],
                description=data["description"],
                training_data=data["training_data"],
                intended_use=data["intended_use"],
                coils=data["coils"],
                matrix=matrix,
            )
        except ExternalModelError as exc:
            form.add_error("file", str(exc))
        else:
            record(
                request.user,
                "external_model.add",
                obj=model,
                request=request,
                details={"name": model.name, "format": model.format, "sha256": model.sha256},
            )
            messages.success(request, f"{model.method} is now a method for protocols.")
            return redirect("protocols:models")
    if request.method == "POST":
        status = 400
    models = ExternalModel.objects.select_related("uploaded_by")
    return render(
        request, "protocols/models.html", {"form": form, "models": models}, status=status
    )
