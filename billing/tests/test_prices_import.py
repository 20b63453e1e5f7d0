"""``manage.py prices_import``: the price book against genai-prices, with the package's own
data (offline) and with crafted data for the diff, apply, history and bad-entry cases."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from genai_prices import types as gp
from genai_prices.data import providers as bundled

from billing import price_import, price_source
from billing.models import LanguageModel, ModelPrice, Tier
from billing.pricing import Usage
from billing.selectors import model_price_at, models_for_tier
from billing.services import call_cost_eur, model_price_set

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SEEDED_FROM = datetime(2024, 1, 1, tzinfo=UTC)
USAGE = Usage(prompt_tokens=1_000, completion_tokens=500)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _at_a_fixed_time() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def _model(model_id: str, prices, *, context: int | None = None) -> gp.ModelInfo:
    return gp.ModelInfo(
        id=model_id, match=gp.ClauseEquals(equals=model_id), context_window=context, prices=prices
    )


def _price(**values: str | gp.TieredPrices) -> gp.ModelPrice:
    return gp.ModelPrice(**{k: D(v) if isinstance(v, str) else v for k, v in values.items()})


def _provider(provider_id: str, *models: gp.ModelInfo) -> gp.Provider:
    return gp.Provider(id=provider_id, name=provider_id, api_pattern="x", models=list(models))


# The seeded gpt-4o and gpt-4o-mini as genai-prices has them.
GPT_4O = _model(
    "gpt-4o", _price(input_mtok="2.5", output_mtok="10", cache_read_mtok="1.25"), context=128_000
)
GPT_4O_MINI = _model(
    "gpt-4o-mini",
    _price(input_mtok="0.15", output_mtok="0.6", cache_read_mtok="0.075"),
    context=128_000,
)


@pytest.fixture
def source(monkeypatch) -> list[gp.Provider]:
    """Crafted price data the command reads instead of the bundled one; tests edit it."""
    data = [_provider("openai", GPT_4O, GPT_4O_MINI)]
    monkeypatch.setattr(price_source, "bundled_providers", lambda: data)
    return data


def run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("prices_import", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        assert exit_.code is not None
        return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def lines(out: str) -> list[str]:
    """The output's lines with runs of spaces collapsed (column widths vary with the data)."""
    return [" ".join(line.split()) for line in out.splitlines()]


def _openai(source: list[gp.Provider]) -> gp.Provider:
    return source[0]


def _replace(source: list[gp.Provider], model: gp.ModelInfo) -> None:
    models = _openai(source).models
    models[:] = [model if m.id == model.id else m for m in models]
    if model not in models:
        models.append(model)


def _periods(model_id: str) -> list[tuple[datetime, datetime | None, D, D]]:
    return [
        (p.valid_from, p.valid_to, p.input_usd_per_mtok, p.output_usd_per_mtok)
        for p in ModelPrice.objects.filter(model__model_id=model_id).order_by("valid_from")
    ]


# --- the package's own data --------------------------------------------------------------------


def _context_window(diff: price_import.ModelDiff) -> tuple[D | int | None, D | int | None]:
    change = diff.context_window
    assert change is not None
    return change.current, change.source


def test_with_the_pinned_data_only_two_gemini_context_windows_differ():
    plan = price_import.plan(bundled, now=NOW)

    changed = {diff.model.model_id: _context_window(diff) for diff in plan.changed}
    assert changed == {
        "gemini-1.5-pro": (2_097_152, 1_000_000),
        "gemini-2.0-flash": (1_048_576, 1_000_000),
    }
    assert all(not diff.periods for diff in plan.diffs)
    assert plan.unchanged == 21
    assert plan.not_in_source == [] and plan.unmappable == []


def test_check_on_the_pinned_data_prints_the_table_and_exits_1():
    status, out, _ = run("--check", "--provider", "google")

    assert status == 1
    assert out.splitlines()[0] == (
        "Price data: genai-prices 0.2.3, bundled; compared at 2026-12-02 12:00 UTC."
    )
    assert "gemini-1.5-pro context window 2,097,152 1,000,000 on --apply" in lines(out)
    assert "gemini-2.0-flash context window 1,048,576 1,000,000 on --apply" in lines(out)
    assert "Summary: 2 models with changes," in out
    assert list(
        LanguageModel.objects.filter(model_id="gemini-1.5-pro").values_list(
            "context_window", flat=True
        )
    ) == [2_097_152]


def test_the_pinned_data_offers_providers_own_models_only():
    plan = price_import.plan(bundled, now=NOW, provider_filter=["google", "perplexity"])

    new = {(m.provider, m.model_id) for m in plan.new_models}
    assert ("google", "gemini-3.1-flash-lite") in new
    assert not any(model_id.startswith("claude") for _, model_id in new)  # Claude on Vertex
    assert not any("/" in model_id for _, model_id in new)  # Perplexity's Agent API ids
    assert ("google", "gemini-embedding-001") not in new  # no output tokens


def test_adding_a_real_model_creates_it_inactive_with_its_long_context_tier():
    status, out, _ = run("--apply", "--add-models", "--model", "claude-sonnet-4-5")

    assert status == 0
    assert "Applied: 0 models updated, 1 added inactive (claude-sonnet-4-5)." in out
    model = LanguageModel.objects.get(model_id="claude-sonnet-4-5")
    assert (model.provider, model.is_active, model.cost_effective) == ("anthropic", False, False)
    assert model.context_window == 200_000
    price = model.prices.get()
    assert (price.valid_from, price.valid_to) == (NOW, None)
    assert price.input_usd_per_mtok == D("3")
    assert price.output_usd_per_mtok == D("15")
    assert price.cached_input_usd_per_mtok == D("0.3")
    assert price.cache_write_usd_per_mtok == D("3.75")
    assert price.long_context_threshold_tokens == 200_000
    assert price.long_input_usd_per_mtok == D("6")
    assert price.long_output_usd_per_mtok == D("22.5")


# --- diff, apply, history ----------------------------------------------------------------------


def test_an_unchanged_price_book_has_nothing_to_apply(source):
    status, out, _ = run("--apply", "--provider", "openai", "--model", "gpt-4o*")

    assert status == 0
    assert "Nothing to apply: the price book already matches the price data." in out
    assert _periods("gpt-4o") == [(SEEDED_FROM, None, D("2.5"), D("10"))]


def test_apply_adds_a_new_period_and_keeps_history(source):
    _replace(
        source, _model("gpt-4o", _price(input_mtok="3", output_mtok="12", cache_read_mtok="1.25"))
    )

    status, out, _ = run("--apply", "--provider", "openai")

    assert status == 0
    assert "gpt-4o input 2.5 3 on --apply" in lines(out)
    assert "gpt-4o output 10 12 on --apply" in lines(out)
    assert "Applied: 1 model updated (gpt-4o), 0 added inactive." in out
    assert _periods("gpt-4o") == [
        (SEEDED_FROM, NOW, D("2.5"), D("10")),
        (NOW, None, D("3"), D("12")),
    ]
    gpt_4o = LanguageModel.objects.get(model_id="gpt-4o")
    # 1,000 x 2.50 + 500 x 10.00 = 0.0075 USD x 0.87; then 1,000 x 3 + 500 x 12 = 0.009 USD.
    assert call_cost_eur(model=gpt_4o, usage=USAGE, at=NOW - timedelta(seconds=1)) == D("0.006525")
    assert call_cost_eur(model=gpt_4o, usage=USAGE, at=NOW) == D("0.00783")


def test_a_second_apply_changes_nothing_and_says_so(source):
    _replace(
        source, _model("gpt-4o", _price(input_mtok="3", output_mtok="12", cache_read_mtok="1.25"))
    )
    run("--apply", "--provider", "openai")
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        status, out, _ = run("--apply", "--provider", "openai")
        check_status, _, _ = run("--check", "--provider", "openai")

    assert status == 0 and check_status == 0
    assert "Nothing to apply: the price book already matches the price data." in out
    assert len(_periods("gpt-4o")) == 2


def test_a_change_the_source_dates_in_the_past_starts_at_the_import(source):
    _replace(
        source,
        _model(
            "gpt-4o",
            [
                gp.ConditionalPrice(
                    prices=_price(input_mtok="2.5", output_mtok="10", cache_read_mtok="1.25")
                ),
                gp.ConditionalPrice(
                    constraint=gp.StartDateConstraint(start_date=date(2026, 7, 30)),
                    prices=_price(input_mtok="2", output_mtok="8", cache_read_mtok="1"),
                ),
            ],
        ),
    )

    status, out, _ = run("--apply", "--provider", "openai")

    assert status == 0
    assert "on --apply (source: 2026-07-30)" in out
    # Calls until now were billed at 2.50 / 10.00: that stays what they cost.
    assert _periods("gpt-4o") == [
        (SEEDED_FROM, NOW, D("2.5"), D("10")),
        (NOW, None, D("2"), D("8")),
    ]
    gpt_4o = LanguageModel.objects.get(model_id="gpt-4o")
    price = model_price_at(model=gpt_4o, at=datetime(2026, 8, 1, tzinfo=UTC))
    assert price is not None
    assert price.input_usd_per_mtok == D("2.5")


def test_a_change_the_source_schedules_starts_on_its_date(source):
    rise = date(2027, 1, 1)
    _replace(
        source,
        _model(
            "gpt-4o-mini",
            [
                gp.ConditionalPrice(
                    prices=_price(input_mtok="0.15", output_mtok="0.6", cache_read_mtok="0.075")
                ),
                gp.ConditionalPrice(
                    constraint=gp.StartDateConstraint(start_date=rise),
                    prices=_price(input_mtok="0.3", output_mtok="1.2", cache_read_mtok="0.075"),
                ),
            ],
        ),
    )

    status, out, _ = run("--apply", "--provider", "openai")
    again, out_again, _ = run("--check", "--provider", "openai")

    assert status == 0
    assert "gpt-4o-mini input 0.15 0.3 2027-01-01" in lines(out)
    starts = datetime(2027, 1, 1, tzinfo=UTC)
    assert _periods("gpt-4o-mini") == [
        (SEEDED_FROM, starts, D("0.15"), D("0.6")),
        (starts, None, D("0.3"), D("1.2")),
    ]
    assert again == 0, out_again


def test_a_change_before_a_recorded_later_period_is_refused_and_the_others_apply(source):
    gpt_4o = LanguageModel.objects.get(model_id="gpt-4o")
    later = datetime(2027, 6, 1, tzinfo=UTC)
    model_price_set(
        model=gpt_4o,
        valid_from=later,
        input_usd_per_mtok=D("2.5"),
        output_usd_per_mtok=D("10"),
        cached_input_usd_per_mtok=D("1.25"),
    )
    _replace(
        source, _model("gpt-4o", _price(input_mtok="3", output_mtok="12", cache_read_mtok="1.25"))
    )
    _replace(
        source,
        _model("gpt-4o-mini", _price(input_mtok="0.2", output_mtok="0.8", cache_read_mtok="0.075")),
    )

    status, out, err = run("--apply", "--provider", "openai")

    assert status == 1
    assert "price period from 2027-06-01 is not in the source (kept)" in out
    assert err.strip() == (
        "Not applied: gpt-4o (openai): The new period must start after 2027-06-01 00:00 "
        "(existing history)."
    )
    assert _periods("gpt-4o") == [
        (SEEDED_FROM, later, D("2.5"), D("10")),
        (later, None, D("2.5"), D("10")),
    ]
    assert _periods("gpt-4o-mini")[-1] == (NOW, None, D("0.2"), D("0.8"))


def test_a_long_context_tier_becomes_the_threshold_and_the_long_rates(source):
    tiered = gp.TieredPrices(base=D("2.5"), tiers=[gp.Tier(start=272_000, price=D("5"))])
    _replace(
        source,
        _model("gpt-4o", _price(input_mtok=tiered, output_mtok="10", cache_read_mtok="1.25")),
    )

    run("--apply", "--provider", "openai")

    price = model_price_at(model=LanguageModel.objects.get(model_id="gpt-4o"))
    assert price is not None
    assert price.valid_from == NOW
    assert price.input_usd_per_mtok == D("2.5")
    assert price.long_context_threshold_tokens == 272_000
    assert price.long_input_usd_per_mtok == D("5")
    assert price.long_output_usd_per_mtok is None


def test_a_context_window_change_is_applied_and_an_absent_one_is_left_alone(source):
    _replace(
        source,
        _model(
            "gpt-4o",
            _price(input_mtok="2.5", output_mtok="10", cache_read_mtok="1.25"),
            context=256_000,
        ),
    )
    _replace(
        source,
        _model(
            "gpt-4o-mini", _price(input_mtok="0.15", output_mtok="0.6", cache_read_mtok="0.075")
        ),
    )

    status, out, _ = run("--apply", "--provider", "openai")

    assert status == 0
    assert "gpt-4o context window 128,000 256,000 on --apply" in lines(out)
    windows = dict(LanguageModel.objects.values_list("model_id", "context_window"))
    assert (windows["gpt-4o"], windows["gpt-4o-mini"]) == (256_000, 128_000)
    assert len(_periods("gpt-4o")) == 1


def test_per_size_request_fees_are_never_guessed(source):
    source.append(
        _provider(
            "perplexity",
            _model("sonar", _price(input_mtok="2", output_mtok="1", requests_kcount="15")),
            _model("sonar-pro", _price(input_mtok="3", output_mtok="15", requests_kcount="14")),
        )
    )

    status, out, _ = run("--apply", "--provider", "perplexity")

    assert status == 0
    assert (
        "request fee 0.015 in the source, 0.012 recorded as the highest per-size fee: not "
        "applied, change it in the admin" in out
    )
    sonar = model_price_at(model=LanguageModel.objects.get(model_id="sonar"))
    assert sonar is not None
    assert sonar.valid_from == NOW and sonar.input_usd_per_mtok == D("2")
    fees = (sonar.request_fee_low_usd, sonar.request_fee_medium_usd, sonar.request_fee_high_usd)
    assert fees == (D("0.005"), D("0.008"), D("0.012"))
    assert _periods("sonar-pro") == [(SEEDED_FROM, None, D("3"), D("15"))]


# --- bad entries, new models, filters, exit status -----------------------------------------


def test_an_unmappable_entry_is_reported_and_the_others_still_apply(source):
    two_tiers = gp.TieredPrices(
        base=D("2.5"),
        tiers=[gp.Tier(start=128_000, price=D("5")), gp.Tier(start=1_000_000, price=D("7"))],
    )
    _replace(source, _model("gpt-4o", _price(input_mtok=two_tiers, output_mtok="10")))
    _replace(
        source,
        _model("gpt-4o-mini", _price(input_mtok="0.2", output_mtok="0.8", cache_read_mtok="0.075")),
    )

    status, out, _ = run("--apply", "--provider", "openai")

    assert status == 0
    assert "gpt-4o openai 2 price tiers for input_mtok (one is supported)" in lines(out)
    assert _periods("gpt-4o") == [(SEEDED_FROM, None, D("2.5"), D("10"))]
    assert _periods("gpt-4o-mini")[-1] == (NOW, None, D("0.2"), D("0.8"))


@pytest.mark.parametrize(
    ("prices", "reason"),
    [
        (_price(input_mtok="2.5"), "no input and output token prices"),
        ([], "unreadable entry (IndexError: list index out of range)"),
        (_price(input_mtok="-1", output_mtok="10"), "invalid price -1"),
    ],
)
def test_a_broken_entry_is_reported_without_a_traceback(source, prices, reason):
    _replace(source, _model("gpt-4o", prices))

    status, out, err = run("--apply", "--provider", "openai")

    assert status == 0 and err == ""
    assert f"gpt-4o openai {reason}" in lines(out)
    assert _periods("gpt-4o") == [(SEEDED_FROM, None, D("2.5"), D("10"))]


def test_new_models_are_added_inactive_and_cost_effective_only_under_the_ceiling(source):
    _replace(
        source, _model("gpt-7-mini", _price(input_mtok="0.5", output_mtok="2"), context=400_000)
    )
    _replace(source, _model("gpt-7", _price(input_mtok="5", output_mtok="20"), context=1_000_000))

    listed, out_listed, _ = run("--check", "--provider", "openai")
    counted, _, _ = run("--check", "--add-models", "--provider", "openai")
    status, out, _ = run("--apply", "--add-models", "--provider", "openai")

    assert (listed, counted, status) == (0, 1, 0)
    assert "openai gpt-7 5 20 - 1,000,000 no" in lines(out_listed)
    assert "openai gpt-7-mini 0.5 2 - 400,000 yes" in lines(out_listed)
    assert "Applied: 0 models updated, 2 added inactive (gpt-7-mini, gpt-7)." in lines(out)
    added = {
        m.model_id: (m.is_active, m.cost_effective, m.context_window)
        for m in LanguageModel.objects.filter(model_id__startswith="gpt-7")
    }
    assert added == {"gpt-7": (False, False, 1_000_000), "gpt-7-mini": (False, True, 400_000)}
    free = {m.model_id for m in models_for_tier(tier=Tier.objects.get(slug="free"))}
    assert not free & set(added)
    assert _periods("gpt-7-mini") == [(NOW, None, D("0.5"), D("2"))]
    assert run("--check", "--add-models", "--provider", "openai")[0] == 0


def test_provider_and_model_filters_limit_the_comparison(source):
    _replace(
        source, _model("gpt-4o", _price(input_mtok="3", output_mtok="12", cache_read_mtok="1.25"))
    )
    _replace(
        source,
        _model("gpt-4o-mini", _price(input_mtok="0.2", output_mtok="0.8", cache_read_mtok="0.075")),
    )

    status, out, _ = run("--apply", "--provider", "openai", "--model", "gpt-4o-m*")

    assert status == 0
    assert "Applied: 1 model updated (gpt-4o-mini), 0 added inactive." in out
    assert len(_periods("gpt-4o")) == 1 and len(_periods("gpt-4o-mini")) == 2
    assert "claude" not in out


def test_a_model_without_list_prices_is_listed_but_not_a_difference(source):
    LanguageModel.objects.create(provider="openai_compatible", model_id="llama-local")

    status, out, _ = run(
        "--check",
        "--provider",
        "openai",
        "--provider",
        "openai_compatible",
        "--model",
        "gpt-4o*",
        "--model",
        "llama-*",
    )

    assert status == 0
    assert "llama-local openai_compatible no list prices for this provider" in lines(out)
    assert (
        "Summary: 0 models with changes, 0 new models (not counted), 2 unchanged, 1 not compared."
        in out
    )


def test_check_exits_1_on_a_difference_and_changes_nothing(source):
    _replace(
        source, _model("gpt-4o", _price(input_mtok="3", output_mtok="12", cache_read_mtok="1.25"))
    )

    status, out, _ = run("--check", "--provider", "openai")

    assert status == 1
    assert "Summary: 1 model with changes," in out
    assert len(_periods("gpt-4o")) == 1


def test_a_dry_run_shows_the_changes_and_applies_nothing(source):
    _replace(
        source, _model("gpt-4o", _price(input_mtok="3", output_mtok="12", cache_read_mtok="1.25"))
    )

    status, out, _ = run("--provider", "openai")

    assert status == 0
    assert out.rstrip().endswith("Nothing applied: run with --apply to record these changes.")
    assert len(_periods("gpt-4o")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--check", "--apply"], "--check only reports; use it without --apply."),
        (
            ["--model", "no-such-*"],
            "--model no-such-* matches no model of the catalogue or the price data.",
        ),
    ],
)
def test_contradictory_or_empty_arguments_are_a_clear_error(source, args, message):
    with pytest.raises(CommandError) as raised:
        call_command("prices_import", *args, stdout=StringIO())

    assert str(raised.value) == message
    assert raised.value.returncode == 2


# --- fetching genai-prices' JSON ------------------------------------------------------------


@pytest.fixture
def price_server() -> Iterator[tuple[str, dict]]:
    """A loopback HTTP server answering with ``state["status"]`` and ``state["body"]``."""
    state: dict = {"status": 200, "body": b"[]"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/data.json", state
    finally:
        server.shutdown()
        server.server_close()


def test_url_reads_genai_prices_json_through_its_own_client(price_server):
    url, state = price_server
    state["body"] = json.dumps(
        [
            {
                "id": "openai",
                "name": "OpenAI",
                "api_pattern": "x",
                "models": [
                    {
                        "id": "gpt-4o",
                        "match": {"equals": "gpt-4o"},
                        "context_window": 128_000,
                        "prices": {"input_mtok": 3, "output_mtok": 12, "cache_read_mtok": 1.25},
                    }
                ],
            }
        ]
    ).encode()

    status, out, _ = run("--apply", "--provider", "openai", "--model", "gpt-4o", "--url", url)

    assert status == 0
    assert out.splitlines()[0].startswith(f"Price data: genai-prices data from {url};")
    assert _periods("gpt-4o")[-1] == (NOW, None, D("3"), D("12"))


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b"{}", "HTTPStatusError"),
        (
            200,
            b'{"not": "a list"}',
            "ValueError: Expected fetched prices payload to be a provider array",
        ),
        (200, b"[]", "No price data at"),
    ],
)
def test_an_unreadable_source_is_a_clear_error_and_changes_nothing(
    price_server, status, body, message
):
    url, state = price_server
    state.update(status=status, body=body)

    with pytest.raises(CommandError) as raised:
        call_command("prices_import", "--apply", "--url", url, stdout=StringIO())

    assert message in str(raised.value)
    assert raised.value.returncode == 2
    assert ModelPrice.objects.filter(valid_to__isnull=False).count() == 1  # gemini-3.8-flash
