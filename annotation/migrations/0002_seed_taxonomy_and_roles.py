from django.db import migrations

from annotation.roles import ROLES
from annotation.taxonomy import DISCIPLINES, TASKS


def seed(apps, schema_editor):
    Discipline = apps.get_model("annotation", "Discipline")
    Task = apps.get_model("annotation", "Task")
    Group = apps.get_model("auth", "Group")
    by_slug = {}
    for slug, name in DISCIPLINES:
        by_slug[slug], _ = Discipline.objects.get_or_create(slug=slug, defaults={"name": name})
    for code, name, discipline, kind in TASKS:
        Task.objects.get_or_create(code=code, defaults={"name": name, "discipline": by_slug[discipline], "kind": kind})
    for role in ROLES:
        Group.objects.get_or_create(name=role)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
