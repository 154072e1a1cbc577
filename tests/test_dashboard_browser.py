"""The dashboard in a real browser: Debian's chromium driven by Playwright against live_server."""

import os
import re

import openai
import pytest

from accounts.models import ApiKey
from billing.models import UsageRecord
from billing.templatetags.billing_tags import usd
from tests.fixtures_gateway import MODEL_ID, wait_for_record

# Registers the fixtures (fake upstream, chat route) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

PASSWORD = "correct-horse-battery-staple"
# Playwright's sync API runs an event loop in this thread; Django would otherwise
# refuse ORM calls from it (the live server itself runs in its own thread).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())  # the revoke confirmation
    yield page
    context.close()


def test_sign_up_create_copy_call_revoke_key_and_see_usage(page, live_server, chat_route):
    from playwright.sync_api import expect

    # Sign up and land on the dashboard.
    page.goto("/signup/")
    page.get_by_label("Email").fill("browser@example.com")
    page.get_by_label("Password", exact=True).fill("correct-horse-battery-staple")
    page.get_by_label("Confirm password").fill("correct-horse-battery-staple")
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    expect(page.get_by_text("Free plan")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    # Create a key: shown once, with a copy button that really copies it.
    page.get_by_label("Name").fill("browser key")
    page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_test_id("new-key")
    expect(new_key).to_be_visible()
    raw_key = new_key.inner_text().strip()
    assert re.fullmatch(r"bapi_[A-Za-z0-9_-]{43}", raw_key)
    expect(page.get_by_text("only time the full key is shown")).to_be_visible()
    copy = page.get_by_role("button", name="Copy")
    copy.click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == raw_key
    expect(page).to_have_url(f"{live_server.url}/dashboard/")  # the POST's address was swapped back

    # A reload is a plain GET of the dashboard: no new key, and the old one is not shown again.
    page.reload()
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    assert raw_key not in page.content()
    assert ApiKey.objects.filter(user__email="browser@example.com").count() == 1
    row = page.locator("#keys tbody tr", has_text="browser key")
    expect(row.get_by_test_id("key-status")).to_have_text("active")
    expect(row).to_contain_text(raw_key[:12] + "…")

    # The key works: a call through the real SDK, answered by the fake upstream and billed on the free grant.
    sdk = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=raw_key, max_retries=0, timeout=20)
    answer = sdk.chat.completions.with_raw_response.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])
    cost = int(answer.headers["X-Request-Cost-Micro-Usd"])
    assert cost > 0
    assert answer.parse().choices[0].message.content
    record = wait_for_record()
    assert (record.user.email, record.cost_micro_usd) == ("browser@example.com", cost)

    # Revoke it (the confirmation dialog is accepted): the next call is refused at once.
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("revoked. Requests using it are now rejected.")).to_be_visible()
    row = page.locator("#keys tbody tr", has_text="browser key")
    expect(row.get_by_test_id("key-status")).to_have_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])
    sdk.close()

    # Usage: the call is listed with its cost, and nothing for the refused one.
    page.get_by_role("link", name="Usage").click()
    expect(page).to_have_url(f"{live_server.url}/usage/")
    records = page.locator("#records tbody tr")
    expect(records).to_have_count(1)
    expect(records.first).to_contain_text(MODEL_ID)
    expect(records.first).to_contain_text(usd(cost))
    expect(page.get_by_test_id("total-cost")).to_have_text(usd(cost))
    assert UsageRecord.objects.count() == 1

    # Log out.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))


def test_log_in_see_balance_and_charts_and_set_a_key_spend_limit(page, live_server):
    from playwright.sync_api import expect

    from accounts.models import Plan
    from accounts.services import api_key_create, user_create
    from billing.models import Balance
    from billing.services import balance_grant, usage_record
    from billing.templatetags.billing_tags import usd

    user = user_create(email="money@example.com", password=PASSWORD, plan=Plan.objects.get(slug="free"))
    balance_grant(user_id=user.id, amount_micro_usd=20_000_000, reason="Browser credit")
    key, _ = api_key_create(user=user, name="budget key")
    for n, (model, cost) in enumerate([("model-a", 1_250_000), ("model-b", 40_000), ("model-a", 5)]):
        usage_record(
            request_id=f"req-chart-{n}",
            user_id=user.id,
            api_key_id=key.id,
            model=model,
            upstream="local",
            upstream_model=model,
            endpoint="chat/completions",
            stream=False,
            status_code=200,
            cost_micro_usd=cost,
            charge_balance=True,
        )
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # Log in: the balance panel shows what the ledger says.
    page.goto("/login/")
    page.get_by_label("Email").fill("money@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    balance = Balance.objects.get(user=user)
    expect(page.get_by_test_id("balance")).to_have_text(usd(balance.balance_micro_usd))
    expect(page.get_by_test_id("balance-available")).to_have_text(usd(balance.available_micro_usd))
    row = page.locator("#keys tbody tr", has_text="budget key")
    expect(row.get_by_test_id("key-spent")).to_contain_text("$1.290005")

    # The usage page draws both charts on canvases (uPlot, served from static/vendor).
    page.get_by_role("link", name="Usage").click()
    for chart in ("chart-by-day", "chart-by-model"):
        canvas = page.get_by_test_id(chart).locator("canvas")
        expect(canvas).to_be_visible()
        box = canvas.bounding_box()
        assert box["width"] > 100 and box["height"] > 100
    expect(page.locator("#by-model tbody tr")).to_have_count(2)  # the table stays, under the chart

    # Give the key a daily spend limit of $5.25.
    page.get_by_role("link", name="Dashboard").click()
    page.locator("#keys tbody tr", has_text="budget key").get_by_role("link", name="Edit").click()
    page.get_by_label("Spend limit (USD)").fill("5.25")
    page.get_by_label("Period").select_option("day")
    page.get_by_role("button", name="Save controls").click()
    expect(page.get_by_text("Controls of “budget key” saved")).to_be_visible()
    row = page.locator("#keys tbody tr", has_text="budget key")
    expect(row.get_by_test_id("key-budget")).to_contain_text("$1.290005 of $5.25 today")
    key.refresh_from_db()
    assert (key.spend_limit_micro_usd, key.spend_limit_period) == (5_250_000, "day")
    assert errors == []
