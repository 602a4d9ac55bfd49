"""The browser demo, for real: `python app.py` served on a free local port, driven through its API with
gradio_client and through its page with headless Chromium (Debian's, with its chromedriver, via selenium).

The app is served as its Space would serve it: from the folder space/build_space.py assembles (checked file
by file against this checkout: app.py, the package's source, the shipped model), so that one start of the
app tests both the app and that the Space's files alone are enough to run it."""

import dataclasses
import importlib.util
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel
from annotated_pipeline.commands import demo
from annotated_pipeline.evaluation.classifier import load_default_classifier, to_classifier_range
from annotated_pipeline.pipelines.samplers import set_scheduler
from annotated_pipeline.datasets.fashion_mnist import FASHION_MNIST_CLASSES
from annotated_pipeline.visualize.attention import attention_figure
from annotated_pipeline.visualize.denoising import collect_trajectory, denoising_frames, denoising_strip

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 180  # seconds for `python app.py` to answer (imports torch, diffusers, gradio; loads the model)
REQUEST_TIMEOUT = 180  # seconds for one generation, on a shared 2-core machine


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url, process=None, timeout=STARTUP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the app exited with status {process.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def space_folder(tmp_path_factory):
    """The Space, assembled with the shipped model in it."""
    build_space = load_module("build_space", ROOT / "space" / "build_space.py")
    return build_space.build_space(tmp_path_factory.mktemp("space") / "bundled", bundle_model=True)


@pytest.fixture(scope="module")
def app_url(space_folder, tmp_path_factory):
    """`python app.py` run in the Space folder (its own annotated_pipeline and model: a script's folder comes
    first on sys.path) on 127.0.0.1 and a free port; stopped after the module's tests."""
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop(demo.MODEL_ENV, None)
    with open(log, "w") as log_file:
        process = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=space_folder,
                                   env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        try:
            wait_for_page(url, process)
        except (RuntimeError, TimeoutError) as error:
            pytest.fail(f"{error}; its log:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def tiles(grid, n, size=28):
    """The n tiles of a `to_grid` image (as square as n allows, filled row by row) as (n, 1, size, size) uint8."""
    cols = int(np.ceil(np.sqrt(n)))
    array = np.asarray(grid.convert("L"))
    return torch.from_numpy(np.stack([array[(k // cols) * size:(k // cols + 1) * size, (k % cols) * size:(k % cols + 1) * size]
                                      for k in range(n)])[:, None].copy())


def test_api_draws_the_asked_images_deterministically_and_refuses_bad_input(app_url, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False, download_files=str(tmp_path))

    def generate(class_name="all classes", num_images=4, sampler="DDIM", steps=3, guidance=2.0, t_low=200, t_high=700,
                 seed=0, show_denoising=False, show_attention=False):
        job = client.submit(class_name, num_images, sampler, steps, guidance, t_low, t_high, seed, show_denoising,
                            show_attention, api_name="/generate")
        grid, *pictures, summary = job.result(timeout=REQUEST_TIMEOUT)
        return Image.open(grid), pictures, summary

    # Class-conditional samples: 9 sneakers, which the project's classifier should mostly call sneakers.
    grid, pictures, summary = generate("Sneaker", num_images=9, sampler="DPM-Solver++", steps=8)
    assert grid.size == (3 * 28, 3 * 28) and pictures == [None, None, None]
    assert summary.startswith("9 images of Sneaker (DPM-Solver++, 8 steps, guidance 2 at t in 200..700, seed 0) in ")
    with torch.no_grad():
        predicted = load_default_classifier()(to_classifier_range(tiles(grid, 9))).argmax(dim=1)
    assert (predicted == FASHION_MNIST_CLASSES.index("Sneaker")).sum() >= 6, predicted.tolist()

    # The pictures are the visualisation module's, drawn here in-process with the same settings (DDIM, 3 steps,
    # the card's guidance, seed 1), pixel for pixel: the strip, the animation's frames and the attention maps.
    # (With the app's one torch thread: another thread count sums in another order, a gray level off here and there.)
    first, (strip, animation, attention), summary = generate(seed=1, show_denoising=True, show_attention=True)
    assert first.size == (2 * 28, 2 * 28) and summary.count("\n") == 0  # 4 images: all shown, nothing failed
    pipe = set_scheduler(AnnotatedDDPMPipeline.from_pretrained(ROOT / demo.DEFAULT_MODEL_FOLDER), "ddim")
    pipe.set_progress_bar_config(disable=True)
    guidance = dict(guidance_scale=2.0, guidance_interval=(200, 700), num_inference_steps=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trajectory = collect_trajectory(pipe, 4, seed=1, **guidance)
        expected_attention = attention_figure(pipe, 4, seed=1, **guidance)
    finally:
        torch.set_num_threads(threads)
    for sent, expected in ((strip, denoising_strip(trajectory)), (attention, expected_attention)):
        sent = Image.open(sent)
        assert sent.size == expected.size and np.asarray(sent).std() > 10  # not blank
        np.testing.assert_array_equal(np.asarray(sent.convert(expected.mode)), np.asarray(expected))
    with Image.open(animation) as gif:
        frames = denoising_frames(pipe, scale=3, trajectory=trajectory)
        assert (gif.format, gif.n_frames, gif.size) == ("GIF", len(frames), frames[0].size) and len(frames) == 3 + 1
        np.testing.assert_array_equal(np.asarray(gif.convert("L")), np.asarray(frames[0]))
    for bad, message in [(dict(steps=0), "minimum value 1"), (dict(steps=1001), "maximum value 1000"),
                         (dict(num_images=65), "maximum value 64"), (dict(class_name="Cat"), "not in the list of choices"),
                         (dict(t_high=1000), "guidance_interval must be two ints")]:
        with pytest.raises(AppError, match=message):
            generate(**bad)
    # The app still serves after refusing; two requests at once are queued and both answered.
    # The pictures change no sample: the same seed without them draws the same grid.
    jobs = [client.submit("all classes", 4, "DDIM", 3, 2.0, 200, 700, seed, False, False, api_name="/generate")
            for seed in (1, 2)]
    again, other = (Image.open(job.result(timeout=REQUEST_TIMEOUT)[0]) for job in jobs)
    assert np.array_equal(np.asarray(again), np.asarray(first)) and not np.array_equal(np.asarray(other), np.asarray(first))
    assert np.asarray(first).std() > 10  # not a blank grid


def chromium():
    """Headless Debian Chromium through its own chromedriver (selenium never fetches a browser or a driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400",
                     "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    return driver


PICTURES = {"Show the denoising": ("#denoising img", "#animation img"), "Show the attention": ("#attention img",)}


def generate_in_page(driver, url, path, show_pictures=False, timeout=REQUEST_TIMEOUT):
    """Open the page, (tick "Show the denoising" and "Show the attention" and) click Generate, wait for the samples
    (and the pictures, loaded) and save a screenshot to `path`. Returns (screenshot, the samples' <img> box (left,
    top, right, bottom) in it, the samples image the page was sent, the texts of any error toasts)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    button = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#generate"))
    for label in PICTURES if show_pictures else ():
        driver.find_element(By.XPATH, f"//label[contains(., '{label}')]//input").click()
    button.click()

    def loaded(selector):
        return lambda d: next((img for img in d.find_elements(By.CSS_SELECTOR, selector)
                               if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)), None)

    image = wait.until(loaded("#samples img"))
    for selector in (selector for selectors in PICTURES.values() for selector in selectors) if show_pictures else ():
        wait.until(loaded(selector))
    time.sleep(1)  # let the page settle (progress bar gone, images painted)
    driver.save_screenshot(str(path))
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]",
                                 image)
    with urllib.request.urlopen(image.get_attribute("src"), timeout=30) as response:
        sent = Image.open(io.BytesIO(response.read())).convert("L")
    return Image.open(path), tuple(round(v) for v in rect), sent, error_toasts(driver)


def error_toasts(driver):
    from selenium.webdriver.common.by import By

    return [toast.text for toast in driver.find_elements(By.CSS_SELECTOR, ".toast-body.error") if toast.text.strip()]


def test_browser_page_generates_and_shows_the_grid_and_the_pictures(app_url, tmp_path):
    missing = [tool for tool in ("chromium", "chromedriver") if shutil.which(tool) is None]
    if missing or importlib.util.find_spec("selenium") is None:
        pytest.skip(f"needs Debian's chromium and chromium-driver and selenium (.ci/run installs them); missing: "
                    f"{missing or ['selenium']}")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    try:
        screenshot, box, sent, errors = generate_in_page(driver, app_url, tmp_path / "demo.png", show_pictures=True)
        assert errors == []
        assert sent.size == (4 * 28, 4 * 28)  # the default: 16 images
        timing = driver.find_element(By.CSS_SELECTOR, "#timing").text  # the defaults: the card's guidance
        assert timing.startswith("16 images of all classes (DPM-Solver++, 20 steps, guidance 2 at t in 200..700, seed 0) in ")
        assert timing.endswith("The denoising and attention pictures show the first 4 of the 16 images.")
        for selector in ("#denoising img", "#animation img", "#attention img"):  # each picture is on the page, not tiny
            size = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]",
                                         driver.find_element(By.CSS_SELECTOR, selector))
            assert min(size) > 100, (selector, size)
        shown = np.asarray(screenshot.convert("L").crop(box), dtype=np.float32)
        assert shown.shape[0] > 200 and shown.shape[1] > 200 and shown.std() > 30  # a large, not blank, image
        # What the screenshot shows inside the <img> box is the grid the app sent, enlarged.
        expected = np.asarray(sent.resize(shown.shape[::-1], Image.NEAREST), dtype=np.float32)
        assert np.abs(shown - expected).mean() < 25, np.abs(shown - expected).mean()

        # A bad setting typed into the page comes back as an error box in the page.
        field = driver.find_element(By.CSS_SELECTOR, "#t_high input")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys("1000", Keys.TAB)
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        errors = WebDriverWait(driver, REQUEST_TIMEOUT).until(error_toasts)
        assert any("guidance_interval must be two ints" in error and "got (200, 1000)" in error for error in errors), errors
    finally:
        driver.quit()


def load_app_module():
    return load_module("demo_app", ROOT / "app.py")


@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio 6.31's own use of pandas 3, not ours
def test_a_model_that_does_not_load_is_an_error_in_the_page_and_the_app_keeps_serving(tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{not json")
    page = load_app_module().build_demo(str(tmp_path / "broken"))
    port = free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
        client = Client(url, verbose=False, download_files=str(tmp_path))
        for _ in range(2):
            with pytest.raises(AppError, match="did not load"):
                client.submit("all classes", 4, "DDIM", 3, 1.0, 200, 700, 0, False, False,
                              api_name="/generate").result(timeout=60)
        assert "did not load" in str(page.config)  # the status line at the top of the page says it too
    finally:
        page.close()


@pytest.fixture
def tiny_pipe():
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=8, num_class_embeds=3, null_class_embed=True)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_remote_code_route_needs_its_flag_and_draws_the_same_images():
    app = load_app_module()
    request = demo.DemoRequest(class_name="Bag", num_images=2, sampler="DDIM", steps=2)
    grids = []
    for trust_remote_code in (False, True):
        pipe, error = app.load_model(app.DEFAULT_MODEL, trust_remote_code=trust_remote_code)
        assert error is None, error
        from_folder = type(pipe).__module__ != "annotated_pipeline.pipelines.pipeline"  # diffusers ran the folder's pipeline.py
        assert from_folder == trust_remote_code, type(pipe).__module__
        grids.append(np.asarray(demo.generate(pipe, request).grid))
    np.testing.assert_array_equal(*grids)


def test_requests_beyond_the_bounds_are_refused_by_name(tiny_pipe):
    assert demo.class_choices(tiny_pipe) == ["all classes", "class 0", "class 1", "class 2"]
    for bad, message in [(dict(steps=0), "steps must be a whole number from 1 to 1000"),
                         (dict(steps=1001), "steps must be"), (dict(steps=2.5), "steps must be"),
                         (dict(num_images=65), "number of images must be a whole number from 1 to 64"),
                         (dict(class_name="Sneaker"), "unknown class 'Sneaker'; choose one of: all classes, class 0"),
                         (dict(sampler="Euler"), "unknown sampler 'Euler'"), (dict(seed=-1), "seed must be")]:
        with pytest.raises(ValueError, match=message):
            demo.generate(tiny_pipe, demo.DemoRequest(**bad))
    scheduler = tiny_pipe.scheduler
    progress = []
    result = demo.generate(tiny_pipe, demo.DemoRequest(class_name="class 2", num_images=6, sampler="DDIM", steps=4,
                                                       guidance_scale=2.0, guidance_interval=(10, 30), show_denoising=True,
                                                       show_attention=True),
                           on_step=lambda *step: progress.append(step))
    assert tiny_pipe.scheduler is scheduler and result.grid.size == (3 * 8, 2 * 8)
    assert progress == [(i, 4, what) for what in ("sampling", "attention") for i in range(1, 5)]
    assert len(result.animation) == 4 + 1 and result.denoising.size and result.attention.size  # x_0 is the last frame
    assert result.summary.startswith("6 images of class 2 (DDIM, 4 steps, guidance 2 at t in 10..30, seed 0) in ")
    assert result.summary.endswith("The denoising and attention pictures show the first 4 of the 6 images.")


def test_a_failed_attention_figure_is_said_in_the_summary_and_the_samples_stand():
    """A pipeline around diffusers' own UNet2DModel samples, but has none of the attention layers the figure reads."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine"))
    pipe.set_progress_bar_config(disable=True)
    request = demo.DemoRequest(num_images=2, sampler="DDIM", steps=2, show_denoising=True, show_attention=True)
    result = demo.generate(pipe, request)
    plain = demo.generate(pipe, dataclasses.replace(request, show_denoising=False, show_attention=False))
    assert result.attention is None and len(result.animation) == 2 + 1
    assert np.array_equal(np.asarray(result.grid), np.asarray(plain.grid))
    assert result.summary.split("\n\n")[1] == ("The attention maps could not be drawn: AttributeError: 'UNet2DModel' object "
                                                "has no attribute 'attn_processors'")


def test_the_page_starts_from_the_settings_the_model_folder_recommends():
    shipped = AnnotatedDDPMPipeline.from_pretrained(ROOT / demo.DEFAULT_MODEL_FOLDER)
    assert demo.recommended_settings(shipped) == {"steps": 20, "guidance_scale": 2.0, "guidance_interval": (200, 700)}
    unet = AnnotatedUNet2DModel(sample_size=8, in_channels=1, dim=8, dim_mults=(1, 2))
    plain = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50))
    assert demo.recommended_settings(plain) == {}
    assert demo.recommended_settings(plain.set_sampling_defaults(num_inference_steps=7)) == {"steps": 7}


def test_the_space_folder_is_complete(space_folder, tmp_path):
    from huggingface_hub import SpaceCard

    build_space = load_module("build_space", ROOT / "space" / "build_space.py")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    import gradio

    # The Space runs the Gradio these tests ran: the front matter's sdk_version is the demo extra's pin.
    assert pyproject["optional-dependencies"]["demo"] == [f"gradio=={gradio.__version__}"]
    with pytest.raises(ValueError, match="exactly one of"):
        build_space.build_space(tmp_path / "neither")
    hub = build_space.build_space(tmp_path / "hub", model_repo_id="alice/ddpm-fashion-mnist")
    card = SpaceCard.load(hub / "README.md")
    assert (card.data.sdk, card.data.sdk_version, card.data.app_file) == ("gradio", gradio.__version__, "app.py")
    assert card.data.title and card.data.models == ["alice/ddpm-fashion-mnist"] and not (hub / "pretrained").exists()
    requirements = [line for line in (hub / "requirements.txt").read_text().splitlines() if not line.startswith("--")]
    assert requirements == pyproject["dependencies"]
    with pytest.raises(ValueError, match="is not empty"):
        build_space.build_space(hub, model_repo_id="alice/ddpm-fashion-mnist")

    # The folder the app is served from (see app_url): the same files as this checkout's, the model included.
    assert SpaceCard.load(space_folder / "README.md").data.get("models") is None
    assert (space_folder / "requirements.txt").read_text() == (hub / "requirements.txt").read_text()
    sources = [ROOT / "app.py", *(ROOT / "annotated_pipeline").rglob("*"), *(ROOT / demo.DEFAULT_MODEL_FOLDER).rglob("*")]
    sources = [path for path in sources if path.is_file() and "__pycache__" not in path.parts]
    for source in sources:
        assert (space_folder / source.relative_to(ROOT)).read_bytes() == source.read_bytes(), source
    uploaded = {path.relative_to(space_folder) for path in space_folder.rglob("*") if path.is_file()}
    assert uploaded == {path.relative_to(ROOT) for path in sources} | {Path("README.md"), Path("requirements.txt")}


@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio 6.31's own use of pandas 3, not ours
def test_a_request_past_the_time_limit_is_stopped_with_one_message_and_the_app_keeps_serving(tiny_pipe, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    tiny_pipe.unet.register_forward_pre_hook(lambda module, args: time.sleep(0.1))  # each U-Net call takes >= 0.1 s
    page = load_app_module().build_demo("tiny", loaded=(tiny_pipe, None), time_limit=3.0)
    assert page._queue.max_size == demo.MAX_QUEUE
    port = free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path))

        def ask(num_images, steps):
            return client.submit("all classes", num_images, "DDIM", steps, 1.0, 0, 49, 0, False, False,
                                 api_name="/generate").result(timeout=REQUEST_TIMEOUT)

        with pytest.raises(AppError) as stopped:
            ask(1, 50)  # 50 steps of >= 0.1 s: at least 5 s of work, stopped after 3 s, at most 30 steps in
        match = re.fullmatch(r"This request was stopped at the demo's time limit of 3 s \(sampling, after (\d+) of 50 "
                             r"steps\): ask for fewer images or steps.", str(stopped.value))
        assert match and 1 <= int(match.group(1)) <= 31, str(stopped.value)
        with pytest.raises(AppError, match=r"^64 images x 50 steps is 3200 image-steps, over the demo's bound of 2000 "
                                           "for one request: ask for fewer images or steps$"):
            ask(64, 50)
        grid, _, _, _, summary = ask(2, 1)  # the next request is served
        assert summary.startswith("2 images of all classes (DDIM, 1 steps, seed 0)") and Image.open(grid).size == (16, 8)
    finally:
        page.close()
