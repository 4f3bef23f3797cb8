"""The two permission groups of the task admin: "newsrec viewers" look, "newsrec operators" act."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWERS = "newsrec viewers"
OPERATORS = "newsrec operators"
VIEW = ["view_taskrecord"]
ACT = VIEW + ["delete_taskrecord", "retry_taskrecord", "requeue_dead_letters", "manage_schedules"]


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations ran; these groups need them now.
    app_config = apps.get_app_config("pipeline")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ((VIEWERS, VIEW), (OPERATORS, ACT)):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="pipeline", codename__in=codenames))


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[VIEWERS, OPERATORS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("pipeline", "0002_task_records_admin"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
