"""Working sets measured from real torch models; the sizing check the callbacks make."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from wattwise.errors import ConfigurationError
from wattwise.introspect import StepRecorder, torch_working_sets
from wattwise.model.coefficients import preset
from wattwise.model.working_sets import mlp_working_sets
from wattwise.sizing import check_torch_model, load_coefficients, save_coefficients


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.Tanh(),
        torch.nn.Linear(16, 3),
    )


def test_dense_only_torch_model_equals_mlp_working_sets():
    net = _mlp()
    ws = torch_working_sets(net, (torch.randn(5, 20), torch.zeros(5)), batch_size=64, n_samples=1000)
    assert ws == mlp_working_sets([32, 16, 3], 20, 64, n_obs=1000)
    assert ws.source == "mlp" and ws.measured == ()


def test_lightning_module_is_a_module():
    L = pytest.importorskip("lightning.pytorch")

    class M(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(10, 8)
            self.l2 = torch.nn.Linear(8, 2)

        def forward(self, x):
            return self.l2(torch.relu(self.l1(x)))

    m = M()
    m.train()
    ws = torch_working_sets(m, {"x": torch.randn(3, 10), "y": torch.zeros(3)}, batch_size=16)
    assert ws.widths == (8, 2) and ws.n_in == 10
    assert m.training and m.l1.training  # mode restored


def test_check_torch_model_leaves_model_untouched_and_conv_is_measured():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = check_torch_model(net, torch.randn(2, 1, 8, 8), batch_size=32, n_samples=100,
                          hardware="butter-e-gpu")
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats untouched
    assert net.training and all(m.training for m in net.modules())
    ws = a.working_sets
    assert ws.source == "torch" and set(ws.measured) >= {"t", "b", "f"}
    assert ws.ntp == sum(p.numel() for p in net.parameters())
    assert ws.inter_layer[0].distributed_bytes == 4 * 32 * (1 * 8 * 8 + 4 * 6 * 6)
    assert ws.forward.replicated_bytes == 4 * ws.ntp
    assert any("fitted on dense MLPs" in n for n in a.notes)
    assert json.loads(json.dumps(a.to_json()))["working_sets"]["source"] == "torch"


def test_coefficients_path_and_bad_inputs(tmp_path):
    p = save_coefficients(preset("paper-gpu"), tmp_path / "c.json")
    assert load_coefficients(p) == preset("paper-gpu")
    a = check_torch_model(_mlp(), torch.randn(4, 20), batch_size=8, hardware="butter-e-gpu",
                          coefficients=str(p))
    assert a.coefficients == preset("paper-gpu")
    with pytest.raises(ConfigurationError, match="batch_size=0"):
        check_torch_model(_mlp(), torch.randn(4, 20), batch_size=0)
    with pytest.raises(ConfigurationError, match="not a torch.nn.Module"):
        check_torch_model(object(), torch.randn(4, 20), batch_size=8)
    with pytest.raises(ConfigurationError, match="cannot read"):
        check_torch_model(_mlp(), torch.randn(4, 20), batch_size=8, coefficients=tmp_path / "no.json")


def test_non_mlp_resize_options_scale_approximately():
    from wattwise.model.hierarchy import BUTTER_E_GPU, Hierarchy

    net = torch.nn.Sequential(torch.nn.Conv1d(1, 64, 5), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(64 * 60, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 4))
    a = check_torch_model(net, torch.randn(2, 1, 64), batch_size=64, hardware="butter-e-gpu")
    assert a.far and a.width_options
    for o in a.width_options:
        assert o.widths is None  # not an MLP: no widths to give
        assert o.ntp == pytest.approx(a.working_sets.ntp * o.width_scale**2, rel=1e-3)
        assert 1 <= o.ratio <= 2
    assert Hierarchy.from_json(a.to_json()["hierarchy"]) == BUTTER_E_GPU


def _conv():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 5))


def _train_step(net, x, y):
    """One real training step (train mode, gradients, an optimizer step), as a trainer runs it."""
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss = torch.nn.CrossEntropyLoss()
    rec = StepRecorder(net)
    rec.start()
    opt.zero_grad()
    loss(net(x), y).backward()
    opt.step()
    rec.stop()
    return rec


@pytest.mark.parametrize("make, shape", [(_mlp, (6, 20)), (_conv, (6, 1, 8, 8))])
def test_step_recorder_equals_the_forward_pass(make, shape):
    x = torch.randn(*shape)
    y = torch.zeros(6, dtype=torch.long)
    net = make()
    want = torch_working_sets(net, (x, y), batch_size=6, n_samples=600)
    rec = _train_step(net, x, y)
    assert rec.working_sets((x, y), batch_size=6, n_samples=600) == want
    assert rec._handles == []  # the hooks are gone: later steps record nothing
    n = len(rec.records)
    net(x)
    assert len(rec.records) == n


def test_check_torch_model_falls_back_to_the_recorded_step():
    class NoForward(torch.nn.Module):  # the LightningModule pattern: self.net(x) in the step
        def __init__(self):
            super().__init__()
            self.net = _mlp()

    m = NoForward()
    x, y = torch.randn(4, 20), torch.zeros(4, dtype=torch.long)
    with pytest.raises(NotImplementedError):  # one forward pass cannot work
        check_torch_model(m, (x, y), batch_size=4, hardware="butter-e-gpu")
    rec = StepRecorder(m)
    rec.start()
    torch.nn.functional.cross_entropy(m.net(x), y).backward()
    rec.stop()
    a = check_torch_model(m, (x, y), batch_size=4, hardware="butter-e-gpu", step=rec)
    assert a.working_sets == mlp_working_sets([32, 16, 3], 20, 4)
    assert any("first training step" in n and "forward" in n for n in a.notes)
    with pytest.raises(ConfigurationError, match="forward pass failed.*ran no submodule"):
        check_torch_model(m, (x, y), batch_size=4, hardware="butter-e-gpu", step=StepRecorder(m))
