from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, viewsets
from rest_framework.decorators import api_view, permission_classes
from rest_framework.response import Response

from mriplatform.accounts.roles import Role
from mriplatform.audit.services import record
from mriplatform.protocols.models import SCIENTIFIC_FIELDS, Protocol
from mriplatform.protocols.serializers import ProtocolSerializer
from recon_engine.registry import all_methods


class HasRole(permissions.BasePermission):
    """Read for the listed reader roles, write for site administrators."""

    read_roles = (Role.SITE_ADMIN, Role.COORDINATOR)
    write_roles = (Role.SITE_ADMIN,)

    def has_permission(self, request, view):
        user = request.user
        if not user.is_authenticated:
            return False
        roles = self.read_roles if request.method in permissions.SAFE_METHODS else self.write_roles
        return user.is_superuser or any(user.has_role(r) for r in roles)


class ProtocolViewSet(
    mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet
):
    """Protocols. Updating (PUT/PATCH) creates a new version and returns it."""

    serializer_class = ProtocolSerializer
    permission_classes = [HasRole]

    def get_queryset(self):
        qs = Protocol.objects.all()
        if self.request.query_params.get("all_versions") != "true":
            qs = qs.filter(is_current=True)
        return qs

    def perform_create(self, serializer):
        protocol = serializer.save(created_by=self.request.user)
        record(self.request.user, "protocol.create", obj=protocol, request=self.request)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        current = self.get_object()
        if not current.is_current:
            return Response({"detail": "only the current version can be edited"}, status=409)
        data = {
            f: getattr(current, f if f != "reference" else "reference_id")
            for f in SCIENTIFIC_FIELDS
        }
        data["description"] = current.description
        data.update(request.data)
        serializer = self.get_serializer(data=data, partial=partial)
        serializer.is_valid(raise_exception=True)
        new = current.new_version(user=request.user, **serializer.validated_data)
        record(
            request.user,
            "protocol.new_version",
            obj=new,
            request=request,
            details={"previous": current.pk},
        )
        return Response(self.get_serializer(new).data, status=201)


@extend_schema(responses={200: dict})
@api_view(["GET"])
@permission_classes([permissions.IsAuthenticated, HasRole])
def methods(request):
    """The engine's reconstruction methods with their parameter schemas."""
    return Response([spec.to_dict() for spec in all_methods()])
