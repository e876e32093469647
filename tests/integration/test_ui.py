"""The web UI in Debian's headless chromium (selenium + chromium-driver), over the real
controller and API: the page renders the fabric, a VM moved in the inventory appears on its
new port without a reload, and approving a held plan works. Screenshots are saved under
the test's tmp folder; their paths are printed (`pytest -s` shows them)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from support.api_fixtures import TOKEN_ENV, Api
from support.live_fabric import LiveFabric, live_fabric

pytestmark = pytest.mark.integration
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
T = TypeVar("T")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (make installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1600,1100", f"--user-data-dir={tmp_path / 'chromium'}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def until(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Wait for ``probe()`` to give something (a stale element counts as not yet)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            found = probe()
            if found:
                return found
        except WebDriverException as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))
        time.sleep(0.1)


def shot(browser: WebDriver, folder: Path, name: str) -> Path:
    path = folder / f"ui-{name}.png"
    browser.save_screenshot(str(path))
    print(f"\nscreenshot: {path}")
    return path


def submit_token(browser: WebDriver, token: str) -> None:
    until("the token dialog", lambda: browser.find_element(By.ID, "login").is_displayed())
    field = browser.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    browser.find_element(By.ID, "login-submit").click()


def sign_in(browser: WebDriver, url: str, token: str) -> None:
    browser.get(url)
    submit_token(browser, token)
    until("the dialog to close", lambda: not browser.find_element(By.ID, "login").is_displayed())


def texts(browser: WebDriver, selector: str) -> list[str]:
    """The text of every element matching ``selector``, read in one step in the page (the
    picture is redrawn as events arrive: element references would go stale)."""
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent);"
    found: list[str] = browser.execute_script(script, selector)
    return found


def count(browser: WebDriver, selector: str) -> int:
    return len(texts(browser, selector))


def port_vlans(browser: WebDriver, switch: str, port: str) -> str:
    found = texts(browser, f'g.port[data-switch="{switch}"][data-port="{port}"] text.vlans')
    return found[0] if found else ""


def vm_on_host(browser: WebDriver, vm: str, host: str) -> bool:
    return count(browser, f'g.host[data-host="{host}"] text.vm[data-vm="{vm}"]') == 1


def text_of(browser: WebDriver, element_id: str) -> str:
    found: str = browser.execute_script(
        "return document.getElementById(arguments[0]).textContent;", element_id
    )
    return found


def test_the_page_draws_the_fabric_and_refuses_a_wrong_token(
    browser: WebDriver, api: Api, tmp_path: Path
) -> None:
    browser.get(api.url)
    submit_token(browser, "not-the-token")
    until("the refusal", lambda: "refused" in text_of(browser, "login-error"))
    assert count(browser, "g.switch") == 0
    submit_token(browser, api.token)
    until("the dialog to close", lambda: not browser.find_element(By.ID, "login").is_displayed())
    until("the switches", lambda: count(browser, "g.switch") == 2)
    until("the hosts", lambda: count(browser, "g.host") == 3)
    assert port_vlans(browser, "leaf1", "p1") == "1,110*,120*"
    dynamic = texts(browser, 'g.port[data-switch="leaf1"][data-port="p1"] tspan.dynamic')
    assert dynamic == ["110*", "120*"]
    assert vm_on_host(browser, "web-01", "esx01")
    assert count(browser, "path.link") == 4
    assert count(browser, 'path.link.static[data-host="esx03"][data-port="p2"]') == 1
    until("the session row", lambda: count(browser, '#sessions tr[data-session="lab"]') == 1)
    assert texts(browser, '#switches tr[data-switch="leaf2"] td.state') == ["unreachable"]
    until("the held plan", lambda: count(browser, f'#plans li[data-plan="{api.held}"]') == 1)
    assert count(browser, "#audit tbody tr") == 3
    browser.find_element(By.ID, "search").send_keys("web-02")
    where = until("the search result", lambda: text_of(browser, "where"))
    assert "web-02 (on) on esx03" in where
    assert "leaf2 p1, leaf2 p2" in where
    assert count(browser, 'g.host.hit[data-host="esx03"]') == 1
    assert count(browser, "g.port.hit") == 2
    shot(browser, tmp_path, "fabric")
    # the token is kept for the tab: a reload asks for nothing
    browser.refresh()
    until("the switches again", lambda: count(browser, "g.switch") == 2)
    assert not browser.find_element(By.ID, "login").is_displayed()


@pytest.fixture
def fabric(tmp_path: Path, api_token: str) -> Iterator[LiveFabric]:
    with live_fabric(tmp_path, TOKEN_ENV) as running:
        yield running


def approve_button(browser: WebDriver, plan_id: int) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, f'#plans li[data-plan="{plan_id}"] button')


def test_a_moved_vm_appears_on_its_new_port_and_approve_releases_the_old_vlan(
    browser: WebDriver, fabric: LiveFabric, tmp_path: Path
) -> None:
    sign_in(browser, fabric.api.url, fabric.token)
    until("VLAN 110 added on leaf1 p1", lambda: "110*" in port_vlans(browser, "leaf1", "p1"))
    until("the live stream", lambda: text_of(browser, "live") == "live")
    assert vm_on_host(browser, "web-01", "esx1")
    browser.execute_script("window.notReloaded = 42;")
    browser.find_element(By.ID, "search").send_keys("web-01")
    shot(browser, tmp_path, "before-move")

    fabric.move("web-01", "esx2")  # vMotion: esx1 (leaf1 p1) -> esx2 (leaf1 p2)
    until("web-01 on esx2", lambda: vm_on_host(browser, "web-01", "esx2"))
    until("the search to say leaf1 p2", lambda: "→ leaf1 p2" in text_of(browser, "where"))
    until("VLAN 110 on leaf1 p2", lambda: "110*" in port_vlans(browser, "leaf1", "p2"))
    assert not vm_on_host(browser, "web-01", "esx1")
    assert browser.execute_script("return window.notReloaded;") == 42
    assert count(browser, 'g.port.hit[data-switch="leaf1"][data-port="p2"]') == 1
    shot(browser, tmp_path, "after-move")

    # the old port's VLAN 110 is held for approval (max_removals: 0)
    ids = until("the held plan", lambda: texts(browser, "#plans li .what"))
    plan_id = int(ids[0].split()[1])
    assert "leaf1 p1: remove 110" in text_of_plan(browser, plan_id)
    assert "110*" in port_vlans(browser, "leaf1", "p1")
    shot(browser, tmp_path, "held-plan")
    approve_button(browser, plan_id).click()
    until("the plan to leave the list",
          lambda: count(browser, f'#plans li[data-plan="{plan_id}"]') == 0)  # fmt: skip
    until("VLAN 110 gone from leaf1 p1", lambda: port_vlans(browser, "leaf1", "p1") == "1,120*")
    until("the removal in the audit log", lambda: audited(browser, "leaf1p1110remove"))
    assert browser.execute_script("return window.notReloaded;") == 42
    headers = {"Authorization": f"Bearer {fabric.token}"}
    shown = httpx.get(f"{fabric.api.url}/api/v1/plans/{plan_id}", headers=headers).json()
    assert shown["status"] == "applied"
    shot(browser, tmp_path, "approved")


def audited(browser: WebDriver, row: str) -> bool:
    """Whether an audit table row reads ``row`` (switch, port, VLAN, action, no spaces)."""
    return any(row in text for text in texts(browser, "#audit tbody tr"))


def text_of_plan(browser: WebDriver, plan_id: int) -> str:
    found = texts(browser, f'#plans li[data-plan="{plan_id}"]')
    return found[0] if found else ""
