from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ml", "0003_stuck_work_sweep"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="phase",
            field=models.CharField(
                blank=True,
                help_text="What the worker is doing now (e.g. loading the model), reported with its progress.",
                max_length=80,
            ),
        ),
    ]
