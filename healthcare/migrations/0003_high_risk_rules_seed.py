"""Give every organisation on a tier with receipts that has no high-risk rule yet the
default set (healthcare.highrisk_defaults). From here on ``accounts.services`` seeds them
when an organisation is created on, or moved to, such a tier (``healthcare.rules``).

Idempotent: an organisation with any rule is left alone. Reversing removes nothing (the
rules may have been edited since). Cached key records pick the rules up when they expire
(at most 5 minutes), or at once when anything else about the organisation changes.
"""

from django.db import migrations


def seed(apps, schema_editor):
    from healthcare.highrisk_defaults import DEFAULT_RULES

    Organization = apps.get_model("accounts", "Organization")
    HighRiskRule = apps.get_model("healthcare", "HighRiskRule")
    organizations = Organization.objects.filter(tier__receipts=True).exclude(
        pk__in=HighRiskRule.objects.values("organization")
    )
    for organization in organizations.iterator():
        HighRiskRule.objects.bulk_create(
            HighRiskRule(
                organization=organization,
                name=name,
                category=category,
                pattern=pattern,
                scope=scope,
                action=action,
            )
            for name, category, pattern, scope, action in DEFAULT_RULES
        )


class Migration(migrations.Migration):
    dependencies = [
        ("healthcare", "0002_append_only"),
        ("billing", "0002_seed_tiers_models_prices"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
