from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.templatetags.aqta_format import eur_format


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (Decimal("0"), "0.00"),
        (Decimal("0.00000440"), "0.0000044"),
        (Decimal("0.00412345"), "0.00412345"),
        (Decimal("0.005"), "0.005"),
        (Decimal("0.01"), "0.01"),
        (Decimal("12.345"), "12.35"),
        (Decimal("1000"), "1000.00"),
        (None, "0.00"),
    ],
)
def test_small_costs_keep_their_significant_digits(amount, shown):
    assert eur_format(amount) == shown
