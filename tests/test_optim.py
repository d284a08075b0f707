"""Optimizers and clipping: the update rules by hand, resuming from state, and PyTorch parity."""

import numpy as np
import pytest

import rnnlab
from rnnlab.optim import SGD, Adam, clip_grad_norm, clip_grad_value, global_norm, make_optimizer


def _params_and_grads(seed=0):
    rng = np.random.default_rng(seed)
    params = {"a": rng.normal(size=(3, 2)), "b": rng.normal(size=(4,))}
    grads = {"a": rng.normal(size=(3, 2)), "b": rng.normal(size=(4,))}
    return params, grads


def test_plain_sgd_moves_against_the_gradient():
    params, grads = _params_and_grads()
    before = {k: v.copy() for k, v in params.items()}
    SGD(lr=0.1).step(params, grads)
    for name in params:
        np.testing.assert_allclose(params[name], before[name] - 0.1 * grads[name])


def test_momentum_and_nesterov_follow_the_textbook_recurrence():
    params, grads = _params_and_grads()
    for nesterov in (False, True):
        p = {k: v.copy() for k, v in params.items()}
        ref = params["a"].copy()
        velocity = np.zeros_like(ref)
        optimizer = SGD(lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
        for step in range(3):
            g = grads["a"] * (step + 1)
            optimizer.step(p, {"a": g, "b": grads["b"]})
            g_total = g + 0.01 * ref
            velocity = 0.9 * velocity + g_total
            ref = ref - 0.05 * (g_total + 0.9 * velocity if nesterov else velocity)
        np.testing.assert_allclose(p["a"], ref, rtol=1e-12)


def test_adam_first_step_has_magnitude_lr_per_element():
    """With bias correction the first Adam step is lr·sign(g) (up to eps)."""
    params, grads = _params_and_grads()
    before = {k: v.copy() for k, v in params.items()}
    Adam(lr=0.01).step(params, grads)
    for name in params:
        np.testing.assert_allclose(params[name] - before[name], -0.01 * np.sign(grads[name]), rtol=1e-6)


def test_adamw_decays_weights_even_with_zero_gradient():
    params = {"w": np.full(3, 2.0)}
    zero = {"w": np.zeros(3)}
    make_optimizer("adamw", 0.1, weight_decay=0.5).step(params, zero)
    np.testing.assert_allclose(params["w"], 2.0 * (1 - 0.1 * 0.5))
    coupled = {"w": np.full(3, 2.0)}
    make_optimizer("adam", 0.1, weight_decay=0.5).step(coupled, zero)
    np.testing.assert_allclose(coupled["w"], 2.0 - 0.1, rtol=1e-6)  # L2 term acts like a gradient


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam", "adamw"])
def test_state_dict_resumes_exactly(name):
    """Four steps straight equal two steps, save, load into a fresh optimizer, two more steps."""
    params, grads = _params_and_grads()
    straight = make_optimizer(name, 0.01, weight_decay=0.01)
    p_straight = {k: v.copy() for k, v in params.items()}
    for _ in range(4):
        straight.step(p_straight, grads)

    first = make_optimizer(name, 0.01, weight_decay=0.01)
    p_resumed = {k: v.copy() for k, v in params.items()}
    for _ in range(2):
        first.step(p_resumed, grads)
    state = first.state_dict()
    first.step({k: v.copy() for k, v in p_resumed.items()}, grads)  # must not leak into `state`
    resumed = make_optimizer(name, 0.5)  # other hyperparameters: the state brings its own
    resumed.load_state_dict(state)
    for _ in range(2):
        resumed.step(p_resumed, grads)
    for key in p_straight:
        np.testing.assert_array_equal(p_straight[key], p_resumed[key])


def test_unknown_optimizer_and_bad_learning_rate_are_refused():
    with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="learning rate must be a positive number"):
        make_optimizer("adam", 0.0)
    with pytest.raises(ValueError, match="learning rate"):
        make_optimizer("sgd", float("nan"))


def test_clip_grad_norm_returns_pre_clip_norm_and_rescales_to_threshold():
    _, grads = _params_and_grads()
    norm = global_norm(grads)
    assert norm > 1.0
    returned = clip_grad_norm(grads, 1.0)
    assert returned == pytest.approx(norm)
    assert global_norm(grads) == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_leaves_small_gradients_and_zero_threshold_alone():
    _, grads = _params_and_grads()
    original = {k: v.copy() for k, v in grads.items()}
    norm = clip_grad_norm(grads, 1e6)
    assert clip_grad_norm(grads, 0.0) == pytest.approx(norm)
    for key in grads:
        np.testing.assert_array_equal(grads[key], original[key])


def test_clip_grad_norm_does_not_touch_non_finite_gradients():
    grads = {"a": np.array([1.0, np.inf])}
    assert clip_grad_norm(grads, 1.0) == np.inf
    assert grads["a"][0] == 1.0


def test_clip_grad_value_clamps_each_element():
    grads = {"a": np.array([-3.0, -0.5, 0.2, 5.0])}
    clip_grad_value(grads, 1.0)
    np.testing.assert_array_equal(grads["a"], [-1.0, -0.5, 0.2, 1.0])


@pytest.mark.parametrize("optimizer_name", ["adam", "adamw", "nesterov"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_training_steps_with_clipping_equal_pytorch(kind, optimizer_name):
    torch = pytest.importorskip("torch")
    model = rnnlab.create_model(kind, 3, 5, num_layers=2, seed=2)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    rnn = cls(3, 5, 2, batch_first=True).double()
    head = torch.nn.Linear(5, 1).double()
    modules = torch.nn.ModuleDict({"rnn": rnn, "head": head})
    modules.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.params.items()})
    torch_opt = {
        "adam": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.01),
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.01),
        "nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    }[optimizer_name](modules.parameters())
    ours = make_optimizer(optimizer_name, 0.05, momentum=0.9, weight_decay=0.01)

    rng = np.random.default_rng(0)
    clipped_steps = 0
    for _ in range(5):
        x, y = rng.normal(size=(6, 4, 3)) * 3, rng.normal(size=6) * 3  # large enough to clip
        _, grads = model.loss_and_grads(x, y)
        our_norm = clip_grad_norm(grads, 0.5)
        ours.step(model.params, grads)

        torch_opt.zero_grad()
        out, _ = rnn(torch.from_numpy(x))
        loss = torch.mean((head(out[:, -1]).squeeze(-1) - torch.from_numpy(y)) ** 2)
        loss.backward()
        torch_norm = torch.nn.utils.clip_grad_norm_(modules.parameters(), 0.5)
        torch_opt.step()
        assert our_norm == pytest.approx(torch_norm.item(), rel=1e-10)
        clipped_steps += our_norm > 0.5
    assert clipped_steps >= 3  # the comparison must exercise clipping, not only plain steps
    for name, param in modules.state_dict().items():
        np.testing.assert_allclose(model.params[name], param.numpy(), rtol=0, atol=1e-10, err_msg=name)
