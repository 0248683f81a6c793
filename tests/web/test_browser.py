"""The web app in headless Chromium (Debian's package, driven by Playwright) against `fanline up`.

One story, two people in two browser contexts: sign up, follow (by keyboard), post, the post
appears in the follower's timeline without a reload, the pipeline page draws its figures and
names the celebrity, unfollow, delete. Every page is screenshotted (into tmp_path; set
FANLINE_WEB_SCREENSHOTS=docs to refresh the committed ones) and must raise no JavaScript or
Content-Security-Policy error, and every form field must have a label.

Runs when /usr/bin/chromium exists; in CI (CI=true, where .ci/run installs it) its absence fails.
`playwright install` is never used: it downloads browsers, and here the system's one is enough.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect, sync_playwright

from tests.up_server import running_up

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
SECRET = "browser-test-secret-long-enough-for-hs256"
# Polling pages (2 s) plus processing: generous, as the machine is shared.
SEEN_TIMEOUT_MS = 20_000
PASSWORD = "a good password"
DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ("login", "home", "user", "pipeline")
# The machine is shared: give every expectation more than Playwright's default 5 s.
expect.set_options(timeout=15_000)
PAGE = 20  # posts per page in app.js
BUSY_POSTS = 24  # more than a page


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the browser tests")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`fanline up --no-world` on a free port; every author with a follower is a celebrity (pulled)."""
    settings = {"FANLINE_BACKEND": "sqlite", "FANLINE_SECRET": SECRET, "FANLINE_CELEBRITY_THRESHOLD": "1",
                "FANLINE_CONSISTENCY_WAIT_MS": "10000"}
    with running_up(tmp_path, settings) as base:
        yield base


@pytest.fixture
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # launch() gives every run a fresh temporary profile (--user-data-dir).
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Person:
    """One browser context (its own localStorage, so its own session) and its page."""

    def __init__(self, browser: Browser, base: str, handle: str) -> None:
        viewport: ViewportSize = {"width": 1000, "height": 800}
        self.context: BrowserContext = browser.new_context(base_url=base, viewport=viewport)
        self.page: Page = self.context.new_page()
        self.handle = handle
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}")
                     if r.status >= 400 else None)
        self.page.on("dialog", lambda dialog: dialog.accept())

    def sign_up(self) -> str:
        page = self.page
        if not page.url.endswith("#/login"):
            page.goto("/#/login")
        page.get_by_label("Handle", exact=True).first.fill(self.handle)
        page.get_by_label("Display name (optional)").fill(self.handle.title())
        page.get_by_label("Password", exact=True).first.fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("heading", name="Home")).to_be_visible()
        session = page.evaluate("JSON.parse(localStorage.getItem('fanline.session'))")
        self.token: str = session["token"]
        user_id: str = session["user_id"]
        return user_id

    def open_user(self, user_id: str) -> None:
        """By keyboard: the "User id" box in the navigation, then Enter."""
        box = self.page.get_by_label("User id")
        box.fill(user_id)
        box.press("Enter")
        expect(self.page.locator("#followers-count")).to_be_visible()

    def post_item(self, text: str) -> object:
        return self.page.locator("ol.posts li", has_text=text)


# WCAG 2 contrast of each visible text's colour against the first opaque background behind it.
CONTRAST_JS = """
() => {
  const lum = (rgb) => {
    const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const opaque = (rgb) => !/rgba\\(.*,\\s*0\\)$/.test(rgb) && rgb !== "transparent";
  const background = (node) => {
    for (; node && node.nodeType === 1; node = node.parentElement) {
      const bg = getComputedStyle(node).backgroundColor;
      if (opaque(bg)) return bg;
    }
    return "rgb(255, 255, 255)";
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    const node = text.parentElement;
    if (!text.textContent.trim() || !node.checkVisibility() || node.closest("svg")) continue;
    const style = getComputedStyle(node);
    const [a, b] = [lum(style.color), lum(background(node))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(`${ratio.toFixed(2)} ${node.tagName} ${text.textContent.trim().slice(0, 30)}`);
  }
  return low;
}
"""


def _contrast_is_readable(page: Page) -> None:
    assert page.evaluate(CONTRAST_JS) == []


def _screenshot(page: Page, name: str, tmp_path: Path) -> None:
    _contrast_is_readable(page)
    target = Path(os.environ.get("FANLINE_WEB_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"web-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _fields_are_labelled(page: Page, at_least: int) -> None:
    fields = page.locator("input, textarea, select")
    expect(fields).not_to_have_count(0)
    assert fields.count() >= at_least
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, textarea, select')]"
        ".filter((e) => e.type !== 'hidden' && e.labels.length === 0).map((e) => e.outerHTML)"
    )
    assert unlabelled == []


def test_two_people_follow_post_read_unfollow_delete_and_watch_the_pipeline(
    server: str, browser: Browser, tmp_path: Path
) -> None:
    alice, bob = Person(browser, server, "alice"), Person(browser, server, "bob")
    alice.page.goto("/#/login")
    _fields_are_labelled(alice.page, at_least=6)  # the user id box, sign-up's three, login's two
    _screenshot(alice.page, "login", tmp_path)
    alice_id = alice.sign_up()
    # Alice finds her id on her page (shown once her registration has been processed) to share it.
    alice.page.get_by_role("link", name="My page").click()
    expect(alice.page.get_by_text(f"@alice · user id {alice_id}")).to_be_visible()
    bob.sign_up()

    # Bob follows Alice, by keyboard: focus the button, press Enter.
    bob.open_user(alice_id)
    follow = bob.page.get_by_role("button", name="Follow @alice")
    follow.focus()
    bob.page.keyboard.press("Enter")
    expect(bob.page.get_by_role("button", name="Unfollow @alice")).to_be_visible()
    expect(bob.page.locator("#followers-count")).to_have_text("1 follower")
    expect(bob.page.get_by_role("list", name="Followers").get_by_role("link", name="@bob")).to_be_visible()

    # Alice posts; the counter counts down from 500.
    text = "hello from alice, live through the pipeline"
    alice.page.get_by_role("link", name="Home").click()
    compose = alice.page.get_by_label("What's happening?")
    compose.fill(text)
    expect(alice.page.locator("#compose-count")).to_have_text(f"{500 - len(text)} characters left")
    compose.fill("x" * 501)
    expect(alice.page.get_by_role("button", name="Post", exact=True)).to_be_disabled()
    compose.fill(text)
    alice.page.get_by_role("button", name="Post", exact=True).click()
    expect(alice.post_item(text)).to_be_visible()
    _fields_are_labelled(alice.page, at_least=2)

    # Bob's home shows it without a reload (the page polls the first page).
    bob.page.get_by_role("link", name="Home").click()
    expect(bob.page.get_by_role("heading", name="Home")).to_be_visible()
    expect(bob.post_item(text)).to_be_visible(timeout=SEEN_TIMEOUT_MS)
    _screenshot(bob.page, "home", tmp_path)

    # The pipeline page: settings, rates from two polls, lag per shard, Alice as a celebrity.
    bob.page.get_by_role("link", name="Pipeline").click()
    expect(bob.page.locator("#pipeline-settings")).to_contain_text("Strategy: hybrid")
    expect(bob.page.locator("#pipeline-settings")).to_contain_text("celebrity threshold: 1 follower ·")
    # Some traffic while the page watches: the rates (from two polls' counters) go above zero.
    # Each post is one event appended and one delivery (into Alice's own timeline).
    auth = {"Authorization": f"Bearer {alice.token}"}
    for n in range(BUSY_POSTS):
        answer = httpx.post(f"{server}/v1/posts", json={"body": f"busy {n}"}, headers=auth)
        assert answer.status_code == 202, answer.text
        time.sleep(0.1)
    positive = re.compile(r"^(0\.[1-9]|[1-9]\d*\.\d)$")
    expect(bob.page.locator("#appended-value")).to_have_text(positive, timeout=SEEN_TIMEOUT_MS)
    expect(bob.page.locator("#deliveries-value")).to_have_text(positive, timeout=SEEN_TIMEOUT_MS)
    expect(bob.page.locator("#dead-letters-value")).to_have_text("0")
    expect(bob.page.locator("#lag-value")).to_have_text(re.compile(r"^\d+$"))
    expect(bob.page.get_by_role("img", name="records behind, per shard")).to_be_visible()
    expect(bob.page.locator("#celebrities").get_by_role("link", name="@alice")).to_be_visible()
    _screenshot(bob.page, "pipeline", tmp_path)

    # Alice's page shows a first page of her posts; scrolling to its end loads the older ones.
    bob.open_user(alice_id)
    expect(bob.page.locator("ol.posts li")).to_have_count(PAGE)
    expect(bob.post_item(text)).to_have_count(0)
    _screenshot(bob.page, "user", tmp_path)
    bob.page.get_by_role("button", name="Load older posts").scroll_into_view_if_needed()
    expect(bob.post_item(text)).to_be_visible()
    expect(bob.page.locator("ol.posts li")).to_have_count(BUSY_POSTS + 1)
    expect(bob.page.get_by_role("button", name="Load older posts")).to_be_hidden()

    # Bob unfollows; Alice's post leaves his timeline.
    bob.page.keyboard.press("Home")
    bob.page.get_by_role("button", name="Unfollow @alice").click()
    expect(bob.page.get_by_role("button", name="Follow @alice")).to_be_visible()
    expect(bob.page.locator("#followers-count")).to_have_text("0 followers")
    bob.page.get_by_role("link", name="Home").click()
    expect(bob.page.get_by_text("Nothing here yet.")).to_be_visible(timeout=SEEN_TIMEOUT_MS)
    expect(bob.post_item(text)).to_have_count(0)

    # Alice deletes her post; it is gone, also after a reload.
    alice.post_item(text).get_by_role("button", name=re.compile("^Delete post")).click()
    expect(alice.post_item(text)).to_have_count(0)
    alice.page.reload()
    expect(alice.post_item(f"busy {BUSY_POSTS - 1}")).to_be_visible(timeout=SEEN_TIMEOUT_MS)
    expect(alice.post_item(text)).to_have_count(0)
    alice.page.get_by_role("link", name="Pipeline").click()
    expect(alice.page.locator("#pipeline-settings")).to_contain_text("Strategy: hybrid")

    assert alice.errors == [] and bob.errors == []


def test_the_readme_shows_a_committed_screenshot_of_each_page() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    for name in PAGES:
        png = DOCS / f"web-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"docs/web-{name}.png" in readme
