"""The three roles, as Django groups of model permissions: one scheme for the admin and the API.

The admin checks these permissions through ModelAdmin (and the actions' `allowed_permissions`); the
API through articles/api/permissions.py, which names the same codenames per write. A person's role
is the group they are in; `is_staff` additionally lets them into the admin site.

Created by the migration articles 0007_roles and kept in step by calling ensure_roles() again (it
only adds). Kept a plain function over the Group and Permission models it is given, so the migration
can pass its historical models and tests (whose database flushes remove groups) the real ones.
"""

from __future__ import annotations

from typing import Any

READERS = "newsrec readers"
OPERATORS = "newsrec operators"
ADMINS = "newsrec admins"

# app label -> codenames. Readers read everything the API shows and record their own interactions
# (recommendations need only a signed-in user).
_READ = {
    "articles": ["view_feed", "view_article", "view_topic", "view_interaction", "view_category"],
    "pipeline": ["view_taskrecord"],
}
_READER = {"articles": [*_READ["articles"], "add_interaction"], "pipeline": _READ["pipeline"]}
# Operators run the pipeline: feeds, topics, labels (an article's topic), scrape and process triggers,
# task retry and requeue, schedules. The task permissions are those of pipeline migration 0003.
_OPERATOR = {
    "articles": [
        *_READER["articles"],
        "add_feed",
        "change_feed",
        "delete_feed",
        "scrape_feed",
        "add_category",
        "change_category",
        "delete_category",
        "add_topic",
        "change_topic",
        "delete_topic",
        "change_article",
        "process_articles",
    ],
    "pipeline": [
        *_READ["pipeline"],
        "delete_taskrecord",
        "retry_taskrecord",
        "requeue_dead_letters",
        "manage_schedules",
    ],
}
# Admins: every permission of these apps, people and tokens included.
_ADMIN_APPS = ("articles", "pipeline", "auth", "authtoken")

ROLES: dict[str, dict[str, list[str]] | tuple[str, ...]] = {
    READERS: _READER,
    OPERATORS: _OPERATOR,
    ADMINS: _ADMIN_APPS,
}


def ensure_roles(group_model: Any, permission_model: Any) -> None:
    """Create the role groups and give each its permissions (which must exist already)."""
    for name, grant in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        if isinstance(grant, tuple):
            permissions = permission_model.objects.filter(content_type__app_label__in=grant)
        else:
            permissions = permission_model.objects.none()
            for app_label, codenames in grant.items():
                permissions = permissions | permission_model.objects.filter(
                    content_type__app_label=app_label, codename__in=codenames
                )
        group.permissions.add(*permissions)
