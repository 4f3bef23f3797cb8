"""Who may do what through the API: the Django model permissions of the roles (articles/roles.py).

One class, the default for every view (settings REST_FRAMEWORK). Reads follow API_PUBLIC_READS (open,
or any signed-in user). A write needs a signed-in user holding every permission the view lists for
it in `write_permissions`, keyed by the viewset action ("create", "scrape", ...) or, for a plain
APIView, the HTTP method ("post"). A write a view does not list is refused: a new endpoint is closed
until it says which permission opens it. The admin checks the same codenames (articles/admin.py,
pipeline/admin/pages.py), so a role means the same in both.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

__all__ = ["RolePermission", "required_permissions"]


def required_permissions(request: Request, view: Any) -> list[str] | None:
    """The permissions `view` lists for this write, or None when it lists none."""
    method = (request.method or "").lower()
    if not hasattr(view, method) or method not in getattr(view, "http_method_names", [method]):
        return []  # a method the view does not answer needs nothing: its 405 says so
    table: dict[str, list[str]] = getattr(view, "write_permissions", {})
    key = getattr(view, "action", None) or method
    return table.get(key)


class RolePermission(BasePermission):
    message = "you do not have the permission this needs"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        signed_in = bool(user and user.is_authenticated)
        if request.method in SAFE_METHODS:
            return signed_in or settings.API_PUBLIC_READS
        if not signed_in:
            return False
        needed = required_permissions(request, view)
        if needed is None:
            self.message = "this write is not open to any role"
            return False
        if not user.has_perms(needed):
            self.message = f"this needs the permission {', '.join(needed)} (see the roles in the README)"
            return False
        return True
