"""The browser explorer, driven in headless Chromium: upload, reconstruction, a slider that re-decodes, and a
bad upload that ends in a message while the server keeps serving. Skipped where Gradio, Selenium or
Debian's chromium and chromium-driver are missing (.ci/run installs them)."""

import shutil
import socket

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

gradio = pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from pdae.app import build_app  # noqa: E402
from pdae.attributes import AttributeDirections  # noqa: E402
from pdae.autoencode import StepCounts  # noqa: E402
from pdae.errors import DataError  # noqa: E402
from pdae.explorer import Explorer  # noqa: E402
from pdae.latent import LatentDPM  # noqa: E402
from pdae.linear import Standardiser  # noqa: E402
from pdae.nn.latent_mlp import LatentMLPConfig  # noqa: E402
from pdae.schedule import NoiseSchedule  # noqa: E402

torch.set_num_threads(1)
WAIT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def explorer(make_shifted_pdae):
    model = make_shifted_pdae(latent_dim=4)
    torch.manual_seed(0)
    directions = AttributeDirections(["smiling", "glasses"], torch.randn(2, 4), torch.zeros(2),
                                     Standardiser(torch.zeros(4), torch.ones(4)), {})
    latent = LatentDPM(LatentMLPConfig(dim=4, width=16, depth=2), NoiseSchedule("linear", 1000)).eval()
    examples = TensorDataset(torch.rand(4, 1, 8, 8) * 2 - 1, torch.zeros(4, dtype=torch.long))
    return Explorer(model, StepCounts(4, 4), directions, latent, examples)


@pytest.fixture(scope="module")
def page(explorer, tmp_path_factory):
    """The app served on a free local port, and a headless Chromium on it."""
    app = build_app(explorer).queue()
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")), options=options)
    browser.get(f"http://127.0.0.1:{port}")
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
    yield browser
    browser.quit()
    app.close()


def image_source(browser, elem_id: str) -> str | None:
    found = browser.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
    return found[0].get_attribute("src") if found else None


def upload(browser, path) -> None:
    """Upload through the page's file input (a fresh page: a filled File component hides its input)."""
    browser.refresh()
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))


def test_upload_reconstructs_and_a_slider_re_decodes_the_image(page, tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray((np.random.default_rng(0).random((20, 24)) * 255).astype(np.uint8)).save(path)
    upload(page, path)
    WebDriverWait(page, WAIT_S).until(lambda b: image_source(b, "reconstruction") and image_source(b, "edited"))
    before = image_source(page, "edited")
    number = page.find_element(By.CSS_SELECTOR, "#slider-0 input[type=number]")
    number.send_keys(Keys.CONTROL, "a")
    number.send_keys("2.5", Keys.TAB)
    WebDriverWait(page, WAIT_S).until(lambda b: image_source(b, "edited") not in (None, before))
    page.save_screenshot(str(tmp_path / "app.png"))


def test_a_file_that_is_no_image_gives_a_message_and_the_server_keeps_serving(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    upload(page, bad)
    WebDriverWait(page, WAIT_S).until(lambda b: "cannot read image" in b.page_source)
    assert "Traceback" not in page.page_source
    good = tmp_path / "digit.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(good)
    upload(page, good)
    WebDriverWait(page, WAIT_S).until(lambda b: image_source(b, "input"))


def test_explorer_caches_the_inversion_while_sliders_move(explorer, monkeypatch):
    import pdae.explorer as module

    calls = []
    real = module.infer_x_T
    monkeypatch.setattr(module, "infer_x_T", lambda *a, **k: calls.append(1) or real(*a, **k))
    x0 = explorer.example(2)
    first = explorer.edit(x0, {"smiling": 1.0})
    second = explorer.edit(x0, {"smiling": -1.0})
    assert len(calls) == 1 and (first - second).abs().max() > 1e-4


def test_uploads_of_every_kind_become_model_images_or_a_message(explorer, tmp_path, monkeypatch):
    import pdae.explorer as module

    Image.fromarray((np.arange(30 * 20).reshape(30, 20) * 100).astype(np.uint16)).save(tmp_path / "16bit.png")
    Image.new("CMYK", (40, 12), (0, 200, 100, 20)).save(tmp_path / "cmyk.jpg")
    Image.new("RGB", (300, 100), (30, 60, 90)).save(tmp_path / "wide.png")
    for name in ("16bit.png", "cmyk.jpg", "wide.png"):
        image = explorer.image_from_file(tmp_path / name)
        assert image.shape == (1, 8, 8) and -1 <= image.min() <= image.max() <= 1
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read image"):
        explorer.image_from_file(tmp_path / "notes.png")
    monkeypatch.setattr(module, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(DataError, match="up to 0 MB"):
        explorer.image_from_file(tmp_path / "wide.png")
