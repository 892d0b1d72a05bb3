"""Numbers that cannot lie: non-finite outputs, diverging runs, collapsed networks, ignored labels.

Each failure is produced for real: a model whose weights are NaN or overflow, a BatchNorm whose
running variance is NaN, a run with a learning rate that makes it diverge, a deep network whose
paper initialisation collapses it to a constant output.
"""

import warnings

import numpy as np
import pytest

import minicnn as mc
import minicnn.data as D
from minicnn import nn, optim
from minicnn.training import topk_errors


def tiny_model():
    mc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))


def batch(n=8):
    g = np.random.default_rng(0)
    return g.normal(size=(n, 1, 4, 4)).astype(np.float32), np.arange(n) % 3


# --------------------------------------------------------------------------- top-k counts
def test_a_non_finite_score_is_a_miss_for_every_k():
    scores = np.array([[np.nan, 0.0, 0.0],       # NaN compares false: a plain rank calls this a hit
                       [0.2, np.inf, 0.1],       # infinity on the true class: still no classification
                       [0.9, 0.1, 0.0]])         # a finite, correct row
    assert topk_errors(scores, [0, 1, 0]) == [2, 2]
    assert topk_errors(np.full((4, 10), np.nan), [0, 1, 2, 3]) == [4, 4]


def test_topk_skips_labels_equal_to_ignore_index():
    scores = np.array([[0.9, 0.1, 0.0], [0.0, 0.1, 0.9], [0.0, 0.9, 0.1]])
    assert topk_errors(scores, [0, -100, 0], ks=(1, 2)) == [1, 1]        # only row 2 is counted wrong
    assert topk_errors(scores, [0, 255, 2], ignore_index=255) == [1, 0]


# --------------------------------------------------------------------------- evaluate refuses non-finite outputs
def test_evaluate_names_the_layer_whose_nan_weights_make_nan_outputs():
    model = tiny_model()
    state = model.state_dict()
    state["3.weight"] = np.full_like(state["3.weight"], np.nan)      # what a diverged run leaves
    model.load_state_dict(state)
    with pytest.raises(FloatingPointError, match=r"layer '3' \(Linear\), whose weight \(NaN\) is not finite"):
        mc.evaluate(model, [batch()])


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_evaluate_names_the_layer_whose_huge_weights_overflow():
    model = tiny_model()
    model.load_state_dict({k: np.full_like(v, 1e38) for k, v in model.state_dict().items()})
    with pytest.raises(FloatingPointError, match=r"layer '0' \(Conv2d\), whose weights are finite"):
        mc.evaluate(model, [batch()])


def test_fit_refuses_validation_outputs_made_nan_by_batchnorm_running_variance():
    mc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    model[1].running_var.data[...] = np.nan     # training mode never reads it; evaluation does
    opt = optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(FloatingPointError, match=r"layer '1' \(BatchNorm2d\), whose running_var \(NaN\)"):
        mc.fit(model, [batch()], 1, opt, val_loader=[batch()], verbose=False)


# --------------------------------------------------------------------------- ignored labels
def test_evaluate_and_fit_skip_ignored_labels_as_the_loss_does():
    images, labels = batch(9)
    ignored = labels.copy()
    ignored[[1, 4, 7]] = -100
    kept = ignored != -100
    assert mc.evaluate(tiny_model(), [(images, ignored)]) == pytest.approx(
        mc.evaluate(tiny_model(), [(images[kept], labels[kept])]))

    histories = []
    for data in ([(images, ignored)], [(images[kept], labels[kept])]):
        model = tiny_model()
        opt = optim.SGD(model.parameters(), lr=0.1)
        histories.append(mc.fit(model, data, 2, opt, val_loader=data, verbose=False).to_dict())
    for key in ("train_loss", "train_top1", "val_loss", "val_top1"):
        assert histories[0][key] == pytest.approx(histories[1][key]), key

    # a loss with its own ignore_index: evaluate counts what the loss counts
    ignored255 = np.where(kept, labels, 255)
    assert mc.evaluate(tiny_model(), [(images, ignored255)], loss_fn=nn.CrossEntropyLoss(ignore_index=255)) == \
        pytest.approx(mc.evaluate(tiny_model(), [(images[kept], labels[kept])]))
    with pytest.raises(ValueError, match="every label is ignore_index=-100"):
        mc.evaluate(tiny_model(), [(images, np.full(9, -100))])


# --------------------------------------------------------------------------- the divergence guard
def softmax_regression_on_digits(lr):
    train, _ = D.digits()
    mc.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    return model, optim.SGD(model.parameters(), lr=lr, momentum=0.9), \
        D.DataLoader(D.Subset(train, range(200)), 20, shuffle=True, seed=0)


def test_a_diverging_run_stops_with_a_clear_error():
    # lr 1000: the loss goes 2.27, 736, 2660, ... -- finite, and meaningless
    model, opt, loader = softmax_regression_on_digits(lr=1000.0)
    with pytest.raises(FloatingPointError, match=r"grew from 2\.\d+ to .* by epoch 1, batch 2: the training "
                                                 r"diverged; try a smaller learning rate \(it is 1000\)"):
        mc.fit(model, loader, 3, opt, verbose=False)


def test_the_divergence_bound_is_configurable():
    model, opt, loader = softmax_regression_on_digits(lr=1000.0)
    with pytest.raises(FloatingPointError, match="batch 3"):      # 2660 / 2.27 > 1000; 736 / 2.27 is not
        mc.fit(model, loader, 1, opt, verbose=False, divergence_factor=1000)
    model, opt, loader = softmax_regression_on_digits(lr=1000.0)
    history = mc.fit(model, loader, 1, opt, verbose=False, divergence_factor=None)    # off: the run goes on
    assert history.train_loss[0] > 100
    for bad in (1, 0.5, "10"):
        with pytest.raises(ValueError, match="divergence_factor must be a number > 1"):
            mc.fit(model, loader, 1, opt, verbose=False, divergence_factor=bad)


def test_a_fine_tuned_run_starting_near_zero_loss_is_not_called_diverged():
    # the transfer demo's fine-tuning: 0.001 on the first batch, 0.16 a few batches later
    from minicnn.run_checks import DivergenceGuard
    guard = DivergenceGuard(100.0)
    for loss in (0.001011, 0.02, 0.1643, 3.0):
        guard.check(loss, 1, "batch 2", 0.01)
    with pytest.raises(FloatingPointError, match=r"grew from 0\.001011 to 150 \(150 times 1\)"):
        guard.check(150.0, 1, "batch 3", 0.01)


def test_a_resumed_run_measures_growth_from_the_first_epoch_of_its_history():
    model, opt, loader = softmax_regression_on_digits(lr=0.1)
    history = mc.fit(model, loader, 1, opt, verbose=False)
    assert mc.fit(model, loader, 2, opt, initial_epoch=1, history=history, verbose=False) is history
    history.train_loss[0] = 0.001            # as if the run had started from a far lower loss ...
    mc.fit(model, loader, 3, opt, initial_epoch=2, history=history, verbose=False)   # ... which counts as 1
    opt.param_groups[0]["lr"] = 1000.0       # then a resumed run that diverges: measured from the history's start
    with pytest.raises(FloatingPointError, match=r"grew from 0\.001 to .* times 1\) by epoch 4"):
        mc.fit(model, loader, 4, opt, initial_epoch=3, history=history, verbose=False)


# --------------------------------------------------------------------------- the collapse warning
def deep_relu_net_with_paper_init():
    """Six ReLU layers initialised N(0, 0.01) as the paper initialises AlexNet, without its
    careful biases: the signal vanishes on the way up and the output is the last bias alone."""
    mc.manual_seed(0)
    layers = [nn.Flatten()]
    for i in range(5):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    g = np.random.default_rng(0)
    model.load_state_dict({k: g.normal(0, 0.01, v.shape).astype(np.float32) if v.ndim == 2 else np.zeros_like(v)
                           for k, v in model.state_dict().items()})
    return model


def test_an_epoch_whose_every_prediction_is_one_class_warns():
    train, _ = D.digits()
    model = deep_relu_net_with_paper_init()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with pytest.warns(RuntimeWarning, match=r"every one of the 200 training predictions was class \d, although "
                                            r"the labels hold 10 classes: the network has collapsed.*ln\(10\) "
                                            r"= 2.3026.*learning rate too high \(it is 0.01\).*initialisation"):
        mc.fit(model, D.DataLoader(D.Subset(train, range(200)), 20, shuffle=True, seed=0), 3, opt, verbose=False)


def test_a_healthy_run_and_a_single_class_epoch_do_not_warn():
    model, opt, loader = softmax_regression_on_digits(lr=0.1)
    images, labels = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mc.fit(model, loader, 2, opt, verbose=False)
        one_class = tiny_model()
        mc.fit(one_class, [(images, np.zeros(8, np.int64))], 3, optim.SGD(one_class.parameters(), lr=0.1),
               verbose=False)     # every label is class 0: predicting it every time is right
