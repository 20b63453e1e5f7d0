from __future__ import annotations

import factory

from accounts.models import User

PASSWORD = "a-long-test-passphrase-42"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    # Hashed as set_password would, before the user is saved.
    password = factory.django.Password(PASSWORD)
