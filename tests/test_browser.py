"""The reader and the task admin in a real browser: headless Chromium (Debian's package) driven by Playwright,
against a real gunicorn, real workers and a real scheduler on a private Postgres and Redis (tests/support/faults.py).

The demo feeds are scraped and processed by the workers (the embedding model runs for real), then a person
signs in, reads, likes, dismisses, searches and opens articles, and an operator looks at the task pages.
The screenshots the README shows are written here, to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from tests.support.faults import Stack, free_port, wait_until  # noqa: E402

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests skipped: no Chromium at {CHROMIUM} (make install adds Debian's chromium when run as root)",
    ),
    pytest.mark.timeout(900),
]
expect = playwright_api.expect
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1440, "height": 900}  # the task list has nine columns
USER, PASSWORD = "demo", "demo-password-for-browser-tests"


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Stack, str]]:
    """The demo, scraped and processed by real workers, behind a real web server."""
    port = free_port()
    env = {
        "NEWSREC_DEMO": "1",
        "PORT": str(port),
        "DEMO_FEEDS_BASE_URL": f"http://127.0.0.1:{port}/demo/feeds/",
        "DEMO_ADMIN_USERNAME": USER,
        "DEMO_ADMIN_PASSWORD": PASSWORD,
    }
    with Stack.running(**env) as stack:
        stack.start_worker("scraping", threads=2)
        stack.start_worker("processing")
        stack.start_scheduler()
        _, base = stack.start_web(port)
        stack.manage("load_demo")
        stack.manage("scrape")  # queued: the scraping worker fetches the feeds from the web server above

        def all_processed() -> bool:
            total, done = stack.query(
                "SELECT count(*), count(*) FILTER (WHERE status = 'processed') FROM articles_article"
            )[0]
            return total > 20 and total == done

        wait_until(all_processed, timeout=400, interval=1, what="every demo article processed by the workers")
        yield stack, base


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


def signed_in(browser, base: str, viewport: dict[str, int] = DESKTOP):  # type: ignore[no-untyped-def]
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="For you", level=1)).to_be_visible()
    return page


def listed(page) -> list[int]:  # type: ignore[no-untyped-def]
    return [
        int(i) for i in page.locator("#for-you-list li.card").evaluate_all("cards => cards.map(c => c.dataset.article)")
    ]


def test_sign_in_see_recommendations_like_and_dismiss(site, browser) -> None:  # type: ignore[no-untyped-def]
    stack, base = site
    page = signed_in(browser, base)
    cards = page.locator("#for-you-list li.card")
    expect(cards.first).to_be_visible()
    assert cards.count() >= 10
    expect(cards.first.locator(".meta .feed")).not_to_be_empty()
    expect(cards.first.locator(".meta time")).to_contain_text("ago")
    page.screenshot(path=SHOTS / "reader-desktop.png", full_page=False)

    before = listed(page)
    liked = before[0]
    cards.first.get_by_role("button", name=re.compile("^Like")).click()
    expect(page.locator("#status")).to_contain_text("Liked")
    after_like = listed(page)
    assert liked not in after_like and after_like != before
    assert stack.scalar("SELECT kind FROM articles_interaction WHERE article_id = %s", [liked]) == "like"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload happened

    dismissed = after_like[0]
    page.locator(f'li.card[data-article="{dismissed}"]').get_by_role("button", name=re.compile("^Dismiss")).click()
    expect(page.locator("#status")).to_contain_text("Dismissed")
    expect(page.locator(f'#for-you-list li.card[data-article="{dismissed}"]')).to_have_count(0)
    assert stack.scalar("SELECT kind FROM articles_interaction WHERE article_id = %s", [dismissed]) == "dismiss"


def test_search_then_open_an_article_and_its_similar(site, browser) -> None:  # type: ignore[no-untyped-def]
    _, base = site
    page = signed_in(browser, base)
    page.get_by_label("Search articles by meaning").fill("football match and goals")
    page.get_by_label("Search articles by meaning").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("football match and goals")
    results = page.locator("li.card")
    expect(results.first).to_be_visible()
    assert "Sports" in page.locator("li.card .meta").first.inner_text() or results.count() > 0

    title = results.first.locator("h2").inner_text()
    results.first.locator("h2 a").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator("a.original")).to_have_attribute("href", re.compile(r"^https?://"))
    similar = page.locator("#similar li a")
    expect(similar.first).to_be_visible()
    expect(page.locator("#sources")).to_be_visible()
    page.screenshot(path=SHOTS / "reader-article.png", full_page=False)
    similar.first.click()
    expect(page.locator("article.story h1")).to_be_visible()

    page.goto(f"{base}/latest/")
    tabs = page.get_by_role("navigation", name="Topics").get_by_role("link")
    assert tabs.count() > 2
    tabs.nth(1).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Latest in")
    expect(page.locator("li.card").first).to_be_visible()


def test_the_reader_is_one_column_on_a_phone(site, browser) -> None:  # type: ignore[no-untyped-def]
    _, base = site
    page = signed_in(browser, base, PHONE)
    expect(page.locator("#for-you-list li.card").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=SHOTS / "reader-phone.png", full_page=False)
    page.locator("#for-you-list li.card h2 a").first.click()
    story, side = page.locator("article.story").bounding_box(), page.locator("aside.side").bounding_box()
    assert side["y"] >= story["y"] + story["height"]  # the side panel sits under the article
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_operator_pages_task_list_detail_queues_and_dashboard(site, browser) -> None:  # type: ignore[no-untyped-def]
    _, base = site
    page = browser.new_context(viewport=WIDE).new_page()
    page.goto(f"{base}/admin/login/?next=/admin/pipeline/taskrecord/dashboard/")
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Task dashboard")).to_be_visible()
    page.locator("#toggle-nav-sidebar").click()  # the admin remembers it: every page below gets the width
    expect(page.locator("#dash-queues + table")).to_contain_text("processing")
    wait_until(lambda: page.reload() or "Running" in page.locator("#dash-scheduler ~ p").first.inner_text(), timeout=60)
    page.screenshot(path=SHOTS / "admin-dashboard.png", full_page=True)

    page.goto(f"{base}/admin/pipeline/taskrecord/")
    rows = page.locator("#result_list tbody tr")
    expect(rows.first).to_be_visible()
    assert "succeeded" in page.locator("#result_list").inner_text()
    page.screenshot(path=SHOTS / "task-list.png", full_page=False)
    actor = rows.first.locator("td.field-actor_name").inner_text()
    rows.first.locator("th a").click()
    expect(page.locator("#content h1, #content h2").first).to_be_visible()
    expect(page.locator("div.field-actor_name")).to_contain_text(actor)

    page.goto(f"{base}/admin/pipeline/taskrecord/queues/")
    expect(page.get_by_role("heading", name="Live workers")).to_be_visible()
    expect(page.locator("#content table").first).to_contain_text("scraping")


def test_api_docs_render_with_nothing_from_another_host(site, browser) -> None:  # type: ignore[no-untyped-def]
    _, base = site
    page = browser.new_context(viewport=DESKTOP).new_page()
    elsewhere: list[str] = []

    def only_this_server(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(base):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(f"{base}/api/docs/")
    expect(page.locator(".swagger-ui .opblock-summary-path", has_text="/api/recommendations/")).to_be_visible()
    page.goto(f"{base}/api/redoc/")
    expect(page.get_by_text("Semantic search", exact=False).first).to_be_visible()
    assert elsewhere == []
