"""Feed categories (0009) arrived after the roles (0007): readers may view them, operators manage them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from articles.roles import ensure_roles


def grant_category_permissions(apps, schema_editor):
    app_config = apps.get_app_config("articles")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    ensure_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [("articles", "0010_feed_fetch_log"), ("articles", "0007_roles")]

    operations = [migrations.RunPython(grant_category_permissions, migrations.RunPython.noop)]
