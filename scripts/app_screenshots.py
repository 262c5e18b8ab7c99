"""Screenshots of `pdae app` on the shipped MNIST PDAE for the README (docs/app-*.png).

    pdae attributes fit -o runs/mnist_digit_directions.safetensors
    python scripts/app_screenshots.py --directions runs/mnist_digit_directions.safetensors

Serves the explorer on a free local port and drives headless Chromium (Debian's chromium and
chromium-driver) through Selenium: opens test digit 3, drags the label=6 slider to 2, then draws samples.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
from pathlib import Path

import torch
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from pdae.app import build_app
from pdae.autoencode import StepCounts
from pdae.commands.explore import open_explorer
from pdae.commands.options import SHIPPED_MNIST, SHIPPED_PDAE

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--directions", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    torch.set_num_threads(2)
    explorer = open_explorer(SHIPPED_PDAE, SHIPPED_MNIST, args.directions, None, StepCounts(),
                             torch.device("cpu"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(explorer).queue()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--window-size=1300,1250", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")), options=options)
    wait = WebDriverWait(browser, 300)
    try:
        browser.get(f"http://127.0.0.1:{port}")
        index = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#example input"))
        index.send_keys(Keys.CONTROL, "a")
        index.send_keys("3")
        browser.find_element(By.ID, "open").click()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#edited img"))
        before = browser.find_element(By.CSS_SELECTOR, "#edited img").get_attribute("src")
        slider = explorer.attributes.index("label=6")
        number = browser.find_element(By.CSS_SELECTOR, f"#slider-{slider} input[type=number]")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", number)
        number.send_keys(Keys.CONTROL, "a")
        number.send_keys("2", Keys.TAB)
        wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#edited img").get_attribute("src") != before)
        browser.execute_script("window.scrollTo(0, 0);")
        browser.save_screenshot(str(args.out / "app-autoencode.png"))
        browser.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Sample')]").click()
        wait.until(lambda b: b.find_element(By.ID, "draw").is_displayed())
        browser.find_element(By.ID, "draw").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#samples img")) >= 8)
        browser.save_screenshot(str(args.out / "app-sample.png"))
    finally:
        browser.quit()
        app.close()
    print(f"wrote {args.out / 'app-autoencode.png'} and {args.out / 'app-sample.png'}")


if __name__ == "__main__":
    main()
