"""The only code that changes curation rows (see curation/models.py); every change is audited."""
