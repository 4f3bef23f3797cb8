"""Role groups (articles/roles.py): newsrec readers, newsrec operators (extends the task admin's group of
pipeline 0003), newsrec admins."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from articles.roles import ROLES, ensure_roles


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations ran; the groups need them now.
    for label in ("articles", "pipeline", "auth", "authtoken"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ensure_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def remove_roles(apps, schema_editor):
    # The operators group predates this migration (pipeline 0003): it stays, with what it had gained.
    apps.get_model("auth", "Group").objects.filter(name__in=[n for n in ROLES if n != "newsrec operators"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("articles", "0006_roles_permissions"),
        ("pipeline", "0003_newsrec_permission_groups"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
