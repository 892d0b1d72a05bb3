"""mc.explore and python -m minicnn explore: the page, opened in a real browser.

Headless Chromium (Debian's chromium package, tests/chromium.py) opens each page from disk;
the tests read the rendered DOM: every layer is a column, the top-5 is the model's, a
clicked unit's numbers are minicnn's forward's, and nothing went to the console as an error.
Where chromium is not installed the browser tests skip, saying so.
"""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import minicnn as mc
from minicnn import cli

from chromium import Chromium, find_chromium

needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="chromium is not installed (apt-get install chromium); .ci/run installs it")


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def page_data(path):
    """The data mc.explore put in the page."""
    text = Path(path).read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="explore-data">(.*?)</script>', text, re.S)[1])


def forward_outputs(model, image):
    """Each named module's output on ``image`` (eval mode), by module name; and the logits."""
    outputs, handles = {}, []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(
                lambda module, inputs, output, name=name: outputs.__setitem__(name, output.numpy()[0])))
    model.eval()
    with mc.no_grad():
        logits = model(mc.Tensor(image[None])).numpy()[0]
    for h in handles:
        h.remove()
    return outputs, logits.astype(np.float64)


def softmax(logits):
    p = np.exp(logits - logits.max())
    return p / p.sum()


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory):
    """A checkpoint of `python -m minicnn train` (alexnet_small, one epoch of the 8x8 digits) and a digit file."""
    from PIL import Image
    from sklearn.datasets import load_digits
    root = tmp_path_factory.mktemp("explore")
    assert cli.main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(root / "run")]) == 0
    digits = load_digits()
    Image.fromarray((digits.images[3] * 15.9).astype(np.uint8)).resize((28, 28)).save(root / "three.png")
    checkpoint = str(root / "run" / "checkpoint.npz")
    _, extra = cli.train.read_run_checkpoint(checkpoint)
    model = cli.train.model_of_run(checkpoint, extra)
    image = cli.train.image_of_file(str(root / "three.png"), extra)
    return dict(root=root, checkpoint=checkpoint, model=model, image=image, png=str(root / "three.png"),
                classes=[str(c) for c in extra["classes"]])


# ------------------------------------------------------------------ what the page holds (no browser)
def test_the_command_writes_one_page_with_the_runs_model_and_image(digit_run, capsys):
    out = digit_run["root"] / "page.html"
    code, printed, _ = run(capsys, "explore", digit_run["checkpoint"], "--image", digit_run["png"], "--out", str(out))
    assert code == 0 and f"wrote {out}" in printed
    data = page_data(out)
    _, logits = forward_outputs(digit_run["model"], digit_run["image"])
    assert [p["cls"] for p in data["top5"]] == list(np.argsort(-logits, kind="stable")[:5])
    assert "predicted class" in data["backward_of"]
    text = out.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "src=\"" not in text   # nothing from a network


def test_a_label_makes_the_gradient_that_of_the_loss(digit_run, tmp_path):
    model, image = digit_run["model"], digit_run["image"]
    mc.explore(model, image, tmp_path / "page.html", label=7)
    data = page_data(tmp_path / "page.html")
    assert data["backward_of"] == "the cross-entropy loss for the label '7'"
    # the input's gradient is the loss's, as minicnn's own backward gives it
    x = mc.Tensor(image[None], requires_grad=True)
    model.eval()
    mc.functional.cross_entropy(model(x), np.array([7])).backward()
    model.zero_grad()
    gradient = data["columns"][0]["gradient"]
    assert gradient["high"] == pytest.approx(np.percentile(np.abs(x.grad), 99), rel=1e-6)


def test_explore_leaves_the_model_as_it_was(digit_run, tmp_path):
    model = digit_run["model"]
    model.train()
    grads_before = [p.grad for p in model.parameters()]
    mc.explore(model, digit_run["image"], tmp_path / "page.html")
    assert model.training and all(m.training for m in model.modules())
    assert all(g is before for g, before in zip((p.grad for p in model.parameters()), grads_before))


@pytest.mark.parametrize("argv, says", [
    (["--image", "missing.png"], "--image missing.png: image missing.png does not exist"),
    (["--label", "11"], "--label '11' is not a class of this model"),
    (["--mean", "0.5"], "--mean and --std are for .onnx files"),
])
def test_a_users_mistake_is_one_error_line_and_exit_status_2(digit_run, capsys, tmp_path, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    argv = list(argv) if "--image" in argv else ["--image", digit_run["png"]] + list(argv)
    code, _, err = run(capsys, "explore", digit_run["checkpoint"], "--out", "page.html", *argv)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: " + says) and "Traceback" not in err
    assert not (tmp_path / "page.html").exists()


def test_an_image_that_is_not_one_input_is_refused(digit_run, tmp_path):
    with pytest.raises(ValueError, match=r"one \(C, H, W\) input of the model"):
        mc.explore(digit_run["model"], np.zeros((2, 1, 24, 24), np.float32), tmp_path / "page.html")
    with pytest.raises(TypeError, match="must hold floats"):
        mc.explore(digit_run["model"], np.zeros((1, 24, 24), np.uint8), tmp_path / "page.html")


# ------------------------------------------------------------------ in the browser
def open_page(path):
    browser = Chromium().__enter__()
    browser.open(Path(path))
    return browser


def column_names(browser):
    return browser.evaluate("[...document.querySelectorAll('.column')].map(c => c.dataset.name)")


def top5_rows(browser):
    return browser.evaluate("[...document.querySelectorAll('.top5-row')].map(r => "
                            "[Number(r.dataset.class), Number(r.dataset.probability)])")


def click_unit(browser, layer, channel, i, j):
    """A real click on unit (channel, i, j) of a layer's output picture, at the centre of its pixel."""
    box = browser.evaluate(f"""(() => {{
        const column = document.getElementById('column-{layer}'), img = column.querySelector('figure img');
        const r = img.getBoundingClientRect();
        img.scrollIntoView();
        const s = img.getBoundingClientRect();
        return [s.left, s.top, s.width, s.height];
    }})()""")
    data = browser.evaluate(f"JSON.stringify(data.columns.find(c => c.name === '{layer}').picture)")
    p = json.loads(data)
    width = p["columns"] * (p["tile_w"] + 1) - 1
    height = -(-p["channels"] // p["columns"]) * (p["tile_h"] + 1) - 1
    x = (channel % p["columns"]) * (p["tile_w"] + 1) + j // p["step"]
    y = (channel // p["columns"]) * (p["tile_h"] + 1) + i // p["step"]
    # a click lands on whole CSS pixels: the first one inside the unit's pixel on the screen
    browser.click(math.ceil(box[0] + x * box[2] / width - 1e-6), math.ceil(box[1] + y * box[3] / height - 1e-6))
    return unit_title(browser)


def unit_title(browser):
    """The title of the unit shown, once the page has shown one (a click changes the address, whose
    hashchange event then draws the unit)."""
    return browser.evaluate("""new Promise(resolve => {
        const poll = (left) => {
            const title = document.getElementById('unit-title');
            if (title || left === 0) resolve(title && title.textContent); else setTimeout(() => poll(left - 1), 20);
        };
        poll(100);
    })""")


def value_of(browser, element_id):
    return float(browser.evaluate(f"document.getElementById('{element_id}').dataset.value"))


def grid_values(browser, caption):
    return np.array(browser.evaluate(f"""[...document.querySelectorAll('#unit-grids table')]
        .find(t => t.caption.textContent === '{caption}').rows.length && [...[...document.querySelectorAll(
        '#unit-grids table')].find(t => t.caption.textContent === '{caption}').rows].map(r => [...r.cells]
        .map(c => Number(c.dataset.value)))"""))


@needs_chromium
def test_the_page_shows_every_layer_the_top5_and_no_console_error(digit_run):
    model, image = digit_run["model"], digit_run["image"]
    path = digit_run["root"] / "browser.html"
    mc.explore(model, image, path, class_names=digit_run["classes"])
    browser = open_page(path)
    try:
        names = column_names(browser)
        # every child of the Sequential, Dropout (a pass-through in eval mode) and Flatten included
        assert names == ["input"] + [name for name, _ in model.named_children()]
        _, logits = forward_outputs(model, image)
        probabilities = softmax(logits)
        rows = top5_rows(browser)
        assert [c for c, _ in rows] == list(np.argsort(-probabilities, kind="stable")[:5])
        np.testing.assert_allclose([p for _, p in rows], np.sort(probabilities)[::-1][:5], rtol=1e-6)
        # a conv column says its time and FLOPs from mc.trace, forward and backward
        cost = browser.evaluate("[...document.querySelectorAll('#column-conv1 .cost')].map(e => e.textContent)")
        assert len(cost) == 2 and cost[0].startswith("forward") and "MFLOP" in cost[0] and cost[1].startswith("backward")
        assert browser.errors == []
    finally:
        browser.__exit__(None, None, None)


@needs_chromium
def test_a_clicked_unit_adds_up_to_minicnns_forward(digit_run):
    """conv2 (3x3, padding 1, two groups) of alexnet_small: the window, the filter, the products' sum
    plus the bias, then ReLU, LRN and the max pooling that read it, each equal to minicnn's forward."""
    model, image = digit_run["model"], digit_run["image"]
    path = digit_run["root"] / "click.html"
    mc.explore(model, image, path)
    outputs, _ = forward_outputs(model, image)
    channel, i, j = 37, 0, 4                      # group 1 of 2; row 0 reads the zero padding
    browser = open_page(path)
    try:
        assert click_unit(browser, "conv2", channel, i, j) == f"conv2: output channel {channel}, row {i}, column {j}"
        x = np.pad(outputs["pool1"], ((0, 0), (1, 1), (1, 1)))
        weight = model.conv2.weight.numpy()
        shown = int(browser.evaluate("document.getElementById('unit-channel').value"))
        assert shown == 32 // 2                   # the group's first input channel
        np.testing.assert_array_equal(grid_values(browser, "window (input)"), x[shown, i:i + 3, j:j + 3])
        np.testing.assert_array_equal(grid_values(browser, "× filter"), weight[channel, shown - 16])
        expected = outputs["conv2"][channel, i, j]
        assert value_of(browser, "unit-minicnn") == float(expected)          # the float32 the forward wrote
        products = x[16:32, i:i + 3, j:j + 3].astype(np.float64) * weight[channel]
        assert value_of(browser, "unit-sum") == pytest.approx(products.sum(), rel=1e-12, abs=1e-12)
        assert value_of(browser, "unit-value") == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
        steps = browser.evaluate("[...document.querySelectorAll('#unit-steps li')].map(li => [li.dataset.op, "
                                 "Number((li.querySelector('b') || li.querySelector('td.winner')).dataset.value)])")
        assert [op for op, _ in steps] == ["ReLU", "LocalResponseNorm", "MaxPool2d"]
        assert steps[0][1] == pytest.approx(outputs["relu2"][channel, i, j], rel=1e-6, abs=1e-7)
        assert steps[1][1] == pytest.approx(outputs["norm2"][channel, i, j], rel=1e-5, abs=1e-7)
        assert steps[2][1] == pytest.approx(outputs["pool2"][channel, 0, 2], rel=1e-5, abs=1e-7)
        assert browser.evaluate("document.getElementById('unit-definitions').textContent").count("minicnn/") >= 3
        assert browser.errors == []
    finally:
        browser.__exit__(None, None, None)


@needs_chromium
def test_an_onnx_file_opens_the_same_way(digit_run, capsys):
    root = digit_run["root"]
    assert run(capsys, "export", digit_run["checkpoint"], str(root / "model.onnx"))[0] == 0
    code, _, _ = run(capsys, "explore", str(root / "model.onnx"), "--image", digit_run["png"], "--out",
                     str(root / "onnx.html"))
    assert code == 0
    loaded = mc.onnx.load(root / "model.onnx")
    from minicnn.data import load_image
    image = load_image(digit_run["png"], image_size=(24, 24), color_mode="grayscale")
    loaded.eval()
    with mc.no_grad():
        logits = loaded(mc.Tensor(image[None])).numpy()[0].astype(np.float64)
    browser = open_page(root / "onnx.html")
    try:
        names = column_names(browser)
        # named after the parameters they read, the others after the op
        assert names[:6] == ["input", "conv1", "relu_1", "local_response_norm_1", "max_pool2d_1", "conv2"]
        assert names[-1] == "fc8"
        assert [c for c, _ in top5_rows(browser)] == list(np.argsort(-logits, kind="stable")[:5])
        click_unit(browser, "conv1", 5, 10, 11)
        conv1 = mc.functional.conv2d(mc.Tensor(image[None]), loaded.conv1.weight, loaded.conv1.bias, padding=2)
        assert value_of(browser, "unit-minicnn") == float(conv1.numpy()[0, 5, 10, 11])
        assert value_of(browser, "unit-value") == pytest.approx(float(conv1.numpy()[0, 5, 10, 11]), rel=1e-5, abs=1e-6)
        assert browser.errors == []
    finally:
        browser.__exit__(None, None, None)


ZOO_INPUTS = {"alexnet": 227, "alexnet_small": 28, "alexnet_torchvision": 64, "vgg16": 32, "vgg16_bn": 32,
              "resnet18": 32}


@needs_chromium
def test_every_model_of_the_zoo_makes_a_page(tmp_path):
    """Each zoo model at a small input it takes (AlexNet needs its 227): the page opens with no error, has
    a column per op, and its first convolution's clicked unit equals the forward."""
    assert set(ZOO_INPUTS) == set(mc.models.ZOO)
    for name, side in ZOO_INPUTS.items():
        mc.manual_seed(0)
        model = mc.models.alexnet_small() if name == "alexnet_small" else getattr(mc.models, name)(num_classes=10)
        channels = 1 if name == "alexnet_small" else 3
        image = np.random.default_rng(0).random((channels, side, side)).astype(np.float32)
        mc.explore(model, image, tmp_path / f"{name}.html")
        data = page_data(tmp_path / f"{name}.html")
        browser = open_page(tmp_path / f"{name}.html")
        try:
            assert column_names(browser) == [c["name"] for c in data["columns"]], name
            first_conv = next(c["name"] for c in data["columns"] if c["conv"])
            browser.evaluate(f"location.hash = 'unit={first_conv}:1,2,3'")
            assert unit_title(browser) == f"{first_conv}: output channel 1, row 2, column 3"
            assert value_of(browser, "unit-value") == pytest.approx(value_of(browser, "unit-minicnn"),
                                                                    rel=1e-5, abs=1e-6), name
            assert browser.errors == [], name
        finally:
            browser.__exit__(None, None, None)


@needs_chromium
def test_the_screenshot_script_draws_the_page_with_a_unit_open(digit_run, tmp_path, capsys):
    import importlib.util
    script = Path(__file__).resolve().parent.parent / "scripts" / "explore_screenshot.py"
    spec = importlib.util.spec_from_file_location("explore_screenshot", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mc.explore(digit_run["model"], digit_run["image"], tmp_path / "page.html")
    assert module.main([str(tmp_path / "page.html"), str(tmp_path / "page.png"), "--unit", "conv2:37,4,5"]) == 0
    from PIL import Image
    with Image.open(tmp_path / "page.png") as picture:
        assert picture.width == 1400 and picture.height > 900      # the whole page, the unit's numbers below
