"""`snnctl serve`'s web chat page, driven in a real headless Chromium against the real server.

The server runs as a subprocess on a tiny chat bundle; the page is loaded from `GET /` and used as a person
would: type, Send (or Enter), Stop, New chat, the settings panel. Without Chromium, chromedriver or selenium
the browser tests are skipped (CI installs them, see .ci/run); the page's static checks always run.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import pytest

from snnctl.config import load_recipe
from snnctl.training.trainer import train
from tests.serving import Server
from tests.test_lm import TINY_SSM

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the browser tests skip
    webdriver = None

CHROMIUM = shutil.which("chromium", path="/usr/bin") or shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver", path="/usr/bin") or shutil.which("chromedriver")
KEY = "sk-test-4711"
LONG = 2000  # tokens asked of the reply Stop aborts (this server allows up to 2048)
WAIT = 90  # seconds: a loaded CI machine, a model on the CPU


def page_source() -> str:
    return files("snnctl").joinpath("serve", "web", "index.html").read_text(encoding="utf-8")


# -- the file itself (no browser needed) ----------------------------------------------------------

def test_page_is_one_self_contained_small_file() -> None:
    html = page_source()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert len(html.encode()) < 32_000
    assert not re.search(r"""(?:https?:)?//[\w.-]+\.\w""", html), "no outside URL (CDN, fonts, scripts)"
    assert not re.search(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=\"(?!data:)", html), "everything inline"
    for needle in ('id="prompt"', 'id="send"', 'id="stop"', 'id="new-chat"', 'id="transcript"', 'id="error"',
                   'aria-live="polite"', '<label for="prompt"'):
        assert needle in html, needle


# -- fixtures: a bundle, servers, a browser -------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    if webdriver is None:
        pytest.skip("selenium is not installed (pip install selenium)")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no Chromium + chromedriver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1000,800",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # an explicit driver: no download
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def bundle(browser, tmp_path_factory: pytest.TempPathFactory) -> Path:  # after `browser`: no bundle if skipped
    return train(load_recipe("chat-ssm", TINY_SSM), tmp_path_factory.mktemp("serve-web") / "bundle").out


@pytest.fixture(scope="module")
def server(bundle: Path) -> Iterator[str]:
    srv = Server(bundle, timeout=WAIT)
    yield srv.url
    assert srv.alive(), f"snnctl serve died:\n{srv.stderr}"
    srv.stop()


@pytest.fixture(scope="module")
def keyed_server(bundle: Path) -> Iterator[str]:
    srv = Server(bundle, "--api-key", KEY, timeout=WAIT)
    yield srv.url
    srv.stop()


# -- helpers: the page as a person uses it --------------------------------------------------------

RECORD_FETCH = """
window.__sent = [];
const real = window.fetch;
window.fetch = (url, opts = {}) => {
  if (String(url).endsWith('/v1/chat/completions'))
    window.__sent.push({body: JSON.parse(opts.body), auth: (opts.headers || {}).Authorization || null});
  return real(url, opts);
};
"""

STOP_ON_FIRST_PIECE = """
new MutationObserver((_, obs) => {
  const last = [...document.querySelectorAll('.msg.assistant')].pop();
  if (last && !last.dataset.done && last.querySelector('.text').textContent) {
    obs.disconnect();
    document.getElementById('stop').click();
  }
}).observe(document.getElementById('transcript'), {subtree: true, childList: true, characterData: true});
"""


def until(driver, what, message: str, timeout: float = WAIT):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: what(d), message)


def open_page(driver, url: str) -> None:
    driver.get(url + "/")
    driver.execute_script("localStorage.clear()")
    driver.get(url + "/")
    driver.execute_script(RECORD_FETCH)


def wait_for_model(driver) -> str:
    return until(driver, lambda d: d.find_element(By.ID, "notice").text.strip(), "the model's notice never showed")


def assistants(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#transcript .msg.assistant")


def error_text(driver) -> str:
    return driver.find_element(By.ID, "error").text.strip()


def settings(driver, **values: str) -> None:
    panel = driver.find_element(By.ID, "settings")
    if not panel.get_attribute("open"):
        panel.find_element(By.TAG_NAME, "summary").click()
    for field, value in values.items():
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)


def send(driver, text: str) -> None:
    box = driver.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()


def finished_reply(driver, n: int):
    """Wait for the n-th assistant message (1-based) to be done; return it."""
    def done(d):
        msgs = assistants(d)
        if error_text(d):
            raise AssertionError(f"the page shows an error: {error_text(d)}")
        return len(msgs) >= n and msgs[n - 1].get_attribute("data-done") == "1" and msgs[n - 1]
    return until(driver, done, f"assistant message {n} never finished")


def stats_of(msg) -> dict:
    st = msg.find_element(By.CLASS_NAME, "stats")
    return {"text": st.text, **{k: st.get_attribute(f"data-{k}") for k in ("tokens", "spikes", "reused", "new")}}


def sent(driver) -> list[dict]:
    return driver.execute_script("return window.__sent")


# -- the page with the real server ----------------------------------------------------------------

@pytest.mark.slow  # trains a tiny bundle, starts servers and Chromium: about a minute
def test_a_reply_streams_in_with_its_figures_and_a_follow_up_reuses_the_state(browser, server: str) -> None:
    d = browser
    open_page(d, server)
    assert "spiking" in wait_for_model(d)
    # greedy: a barely trained model's sampled bytes are often not UTF-8, and a reply the page got as U+FFFD
    # does not re-encode to the tokens the kept state read (the server then rightly reads it all again)
    settings(d, **{"temperature": "0", "seed": "3", "max-tokens": "12"})
    send(d, "Hello")
    first = finished_reply(d, 1)
    assert first.find_element(By.CLASS_NAME, "text").text.strip(), "an empty reply"
    s1 = stats_of(first)
    assert int(s1["tokens"]) >= 1 and float(s1["spikes"]) >= 0, s1
    for words in ("tokens", "tok/s", "spikes/token", "firing", "energy", "compute", "reused"):
        assert words in s1["text"], (words, s1["text"])
    users = d.find_elements(By.CSS_SELECTOR, "#transcript .msg.user")
    assert [u.text for u in users] == ["Hello"]

    box = d.find_element(By.ID, "prompt")  # Shift+Enter is a new line, Enter sends
    box.send_keys("How are", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "you?")
    assert box.get_attribute("value") == "How are\nyou?" and len(assistants(d)) == 1
    box.send_keys(Keys.ENTER)
    s2 = stats_of(finished_reply(d, 2))
    assert int(s2["reused"]) > 0, f"the follow-up did not reuse the session's state: {s2}"

    one, two = sent(d)
    assert one["body"]["session_id"] == two["body"]["session_id"] and one["body"]["stream"] is True
    assert one["body"]["seed"] == 3 and one["body"]["max_tokens"] == 12 and one["body"]["temperature"] == 0
    assert one["auth"] is None
    assert [m["role"] for m in two["body"]["messages"]] == ["user", "assistant", "user"]
    assert two["body"]["messages"][2]["content"] == "How are\nyou?"

    d.find_element(By.ID, "new-chat").click()  # a new conversation: nothing in view, nothing reused
    assert not d.find_elements(By.CSS_SELECTOR, "#transcript .msg")
    send(d, "Hello again")
    s3 = stats_of(finished_reply(d, 1))
    assert int(s3["reused"]) == 0, s3
    third = sent(d)[2]["body"]
    assert third["session_id"] != one["body"]["session_id"] and len(third["messages"]) == 1


@pytest.mark.slow
def test_stop_aborts_a_long_reply_and_the_server_answers_the_next(browser, server: str) -> None:
    d = browser
    open_page(d, server)
    wait_for_model(d)
    settings(d, **{"temperature": "0", "max-tokens": str(LONG)})  # greedy: no early stop token
    for attempt in range(5):  # a reply that ends by itself on its first piece is tried again, new seed
        settings(d, seed=str(attempt))
        d.execute_script(STOP_ON_FIRST_PIECE)
        n = len(assistants(d)) + 1
        send(d, "Tell me a long story")
        msg = finished_reply(d, n)
        if msg.get_attribute("data-stopped") == "1":
            break
    else:
        pytest.fail("every reply finished before Stop could abort it")
    assert not msg.find_elements(By.CLASS_NAME, "stats") and msg.find_element(By.CLASS_NAME, "text").text.strip()
    assert d.find_element(By.ID, "stop").get_attribute("disabled") and d.find_element(By.ID, "send").is_enabled()
    assert not error_text(d)

    settings(d, **{"max-tokens": "8"})  # the server, with the aborted reply behind it, answers the next
    n, started = len(assistants(d)) + 1, time.monotonic()
    send(d, "And now a short one")
    nxt = finished_reply(d, n)
    took = time.monotonic() - started
    assert nxt.get_attribute("data-stopped") is None and int(stats_of(nxt)["tokens"]) >= 1
    tokens_per_s = float(re.search(r"([\d.]+) tok/s", stats_of(nxt)["text"]).group(1))
    assert took < 0.5 * LONG / tokens_per_s, f"the next reply waited {took:.1f} s: the aborted one ran on?"


@pytest.mark.slow
def test_api_key_refused_without_it_then_used_from_settings(browser, keyed_server: str) -> None:
    d = browser
    open_page(d, keyed_server)
    send(d, "Hello")
    until(d, lambda d: "401" in error_text(d), "no 401 error shown without the key")
    assert not assistants(d) and d.find_element(By.ID, "prompt").get_attribute("value") == "Hello"
    message = error_text(d)
    assert len(message) > len("Error 401: "), message

    settings(d, **{"api-key": KEY, "max-tokens": "8"})
    d.find_element(By.ID, "send").click()  # the refused message is back in the box
    msg = finished_reply(d, 1)
    assert int(stats_of(msg)["tokens"]) >= 1 and not error_text(d)
    assert sent(d)[-1]["auth"] == f"Bearer {KEY}"

    d.get(keyed_server + "/")  # the key is remembered
    wait_for_model(d)
    assert d.find_element(By.ID, "api-key").get_attribute("value") == KEY and not error_text(d)


@pytest.mark.slow
def test_the_page_is_served_as_html(server: str) -> None:
    with urllib.request.urlopen(server + "/", timeout=30) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
        assert resp.read().decode() == page_source()
