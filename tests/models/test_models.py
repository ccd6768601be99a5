"""Contract tests for every registered model, and MD2F-Mamba's budget and components."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsicls.models import create_model, list_models
from hsicls.models.complexity import count_flops, count_params
from hsicls.models.md2f import CSFF, HSMGFE
from hsicls.models.md2f.posenc import AxisPositionalEncoding


@pytest.mark.parametrize("name", list_models(kind="deep"))
@pytest.mark.parametrize("bands,patch", [(30, 13), (8, 7), (15, 11), (4, 5)])
def test_output_shape_and_gradients(name, bands, patch):
    torch.manual_seed(0)
    m = create_model(name, in_bands=bands, n_classes=5, patch_size=patch)
    x = torch.randn(3, bands, patch, patch)
    out = m(x)
    assert out.shape == (3, 5)
    out.sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing}"


def test_md2f_budget_pavia_configuration():
    m = create_model("md2f-mamba", in_bands=30, n_classes=9, patch_size=13)
    assert count_params(m) <= 92_400
    assert count_flops(m, 30, 13)["macs"] <= 8_300_000


def test_csff_formula():
    torch.manual_seed(1)
    fl, fg = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    s = torch.nn.functional.cosine_similarity(fl, fg, dim=1, eps=1e-12).unsqueeze(1)
    torch.testing.assert_close(CSFF()(fl, fg), torch.relu(fg + fl * s), atol=1e-5, rtol=1e-5)


def test_positional_encodings_vary_along_one_axis():
    v = AxisPositionalEncoding(4, 7, "vertical")
    h = AxisPositionalEncoding(4, 7, "horizontal")
    zero = torch.zeros(1, 4, 7, 7)
    ev, eh = v(zero), h(zero)
    assert torch.equal(ev, ev[:, :, :, :1].expand_as(ev))  # constant along W
    assert torch.equal(eh, eh[:, :, :1, :].expand_as(eh))  # constant along H


def test_gfe_is_linear_in_positions():
    """Eq. 11 is a per-channel global state: every intermediate tensor and the FLOPs grow
    linearly when N = H W quadruples (no N x N tensor anywhere)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.peak = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self.peak = max(self.peak, t.numel())
            return out

    peak, flops = {}, {}
    for size in (8, 16):
        g = HSMGFE(8, size).eval()
        x = torch.randn(1, 8, size, size)
        with torch.no_grad(), Largest() as mode:
            g(x)
        peak[size] = mode.peak
        flops[size] = count_flops(g, 8, size)["flops"]
    assert peak[16] <= 4 * peak[8]  # N quadruples -> at most 4x, not 16x
    assert flops[16] <= 4 * flops[8] * 1.01


@pytest.mark.parametrize(
    "opts",
    [
        {"fusion": "add"},
        {"fusion": "concat"},
        {"fusion": "weighted"},
        {"mdconv": "false"},
        {"lfem": "false"},
        {"gfe": "false"},
        {"lfem": "false", "gfe": "false"},
        {"directions": "square"},
        {"directions": "none"},
        {"pos_local": "horizontal", "pos_global": "vertical"},
        {"pos_local": "none"},
    ],
)
def test_ablation_switches_build_and_run(opts):
    m = create_model("md2f-mamba", in_bands=10, n_classes=4, patch_size=9, **opts)
    assert m(torch.randn(2, 10, 9, 9)).shape == (2, 4)


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"directions": "horizontal"},
        {"directions": "vertical,square"},
        {"pos_local": "none"},
        {"spectral_stride": "2", "c3": "4"},
    ],
)
def test_inference_path_equals_literal_modules(opts):
    """Eval mode merges MDConv's linear branches into one dense kernel and folds BatchNorm into the
    stem, MDConv and HSM-GFE; the logits must equal those of the literal modules in eval mode."""
    torch.manual_seed(3)
    m = create_model("md2f-mamba", in_bands=12, n_classes=5, patch_size=9, **opts)
    m.train()
    for _ in range(3):  # non-trivial running statistics
        m(torch.randn(16, 12, 9, 9) * 2 + 0.5)
    m.eval()
    x = torch.randn(6, 12, 9, 9)
    switches = [mod for mod in m.modules() if hasattr(mod, "reparameterize")]
    assert len(switches) == 1  # MDConv
    with torch.no_grad():
        fast = m(x)
        for mod in switches:
            mod.reparameterize = False
        literal = m(x)
    torch.testing.assert_close(fast, literal, atol=1e-4, rtol=1e-4)
    for mod in switches:  # the merged path also backpropagates (saliency maps on an eval-mode model)
        mod.reparameterize = True
    xg = x.clone().requires_grad_()
    m(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_fixed_seed_identical_outputs():
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        m = create_model("md2f-mamba", in_bands=10, n_classes=4, patch_size=9).eval()
        outs.append(m(torch.ones(2, 10, 9, 9)))
    assert torch.equal(outs[0], outs[1])


def test_ssftt_size_matches_paper():
    m = create_model("ssftt", in_bands=30, n_classes=9, patch_size=13)
    assert abs(count_params(m) - 152_800) < 500  # 152.8K in the paper's table (Pavia U)


@pytest.mark.parametrize("name", list_models(kind="deep"))
def test_bundle_round_trip_identical_logits(name, tmp_path):
    from hsicls.artifacts.bundle import Bundle, ModelSpec, load_bundle, save_bundle
    from hsicls.artifacts.prepared import Preprocessing

    torch.manual_seed(3)
    m = create_model(name, in_bands=12, n_classes=5, patch_size=9, **({"fusion": "concat"} if name == "md2f-mamba" else {}))
    m.train()
    m(torch.randn(8, 12, 9, 9))  # update BatchNorm running statistics
    m.eval()
    prep = Preprocessing(np.zeros(20), np.ones(20), np.zeros((12, 20)), np.zeros(20))
    b = Bundle(
        model=ModelSpec(name, {"fusion": "concat"} if name == "md2f-mamba" else {}, 12, 5, 9),
        state_dict=m.state_dict(),
        preprocessing=prep,
        class_names=list("abcde"),
        class_values=[1, 2, 3, 4, 5],
        palette=[(0, 0, 0)] * 5,
        training={},
    )
    save_bundle(tmp_path / "b.pt", b)
    x = torch.randn(4, 12, 9, 9)
    with torch.no_grad():
        assert torch.equal(m(x), load_bundle(tmp_path / "b.pt").build_model()(x))


def _blobs(n_classes=4, n=60, f=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (n_classes, f))
    y = np.repeat(np.arange(n_classes), n)
    x = (centres[y] + rng.normal(0, 1.5, (len(y), f))).astype(np.float32)
    return x, y


@pytest.mark.parametrize("k", [2, 3, 4])
def test_svm_module_reproduces_sklearn(k):
    """The module's pairwise decisions are libsvm's; without Platt's sigmoids (bundles from before) its votes give
    sklearn's class; with them (every new bundle) it outputs log-probabilities that sum to 1."""
    from sklearn.svm import SVC

    from hsicls.models.classic import RBFSVM, fit_svm

    x, y = _blobs(n_classes=k)
    xv, yv = _blobs(n_classes=k, seed=1)
    m, opts = fit_svm(x, y, xv, yv, k, 0, log=lambda *_: None)
    assert opts["probability"] is True and m.probabilistic
    ref = SVC(C=opts["C"], gamma=opts["gamma"], decision_function_shape="ovo").fit(x, y)
    patches = torch.from_numpy(xv)[:, :, None, None]
    sk = ref.decision_function(xv).reshape(len(xv), -1)
    np.testing.assert_allclose(m.decisions(patches).numpy(), -sk if k == 2 else sk, rtol=1e-4, atol=1e-4)
    legacy = RBFSVM(x.shape[1], k, n_sv=opts["n_sv"], gamma=opts["gamma"])  # an old bundle: no 'probability'
    legacy.load_state_dict({n: v for n, v in m.state_dict().items() if not n.startswith("platt")})
    assert not legacy.probabilistic
    assert (legacy(patches).argmax(1).numpy() == ref.predict(xv)).all()
    p = torch.softmax(m(patches), 1).numpy()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
    # where the classes are learnt (the training blobs; xv's blobs lie elsewhere), the most probable class is the vote's
    inside = torch.from_numpy(x)[:, :, None, None]
    assert (m(inside).argmax(1) == legacy(inside).argmax(1)).float().mean() > 0.95


def _libsvm_multiclass_probability(r: np.ndarray) -> np.ndarray:
    """libsvm's ``multiclass_probability`` (Wu, Lin & Weng 2004, method 2, iterative), transcribed from svm.cpp."""
    k = r.shape[0]
    q = np.array(
        [[-r[j, t] * r[t, j] if j != t else sum(r[i, t] ** 2 for i in range(k) if i != t) for j in range(k)] for t in range(k)]
    )
    p = np.full(k, 1.0 / k)
    for _ in range(max(100, k)):
        qp = q @ p
        pqp = p @ qp
        if np.max(np.abs(qp - pqp)) < 0.005 / k:
            break
        for t in range(k):
            diff = (-qp[t] + pqp) / q[t, t]
            p[t] += diff
            pqp = (pqp + diff * (diff * q[t, t] + 2 * qp[t])) / (1 + diff) ** 2
            qp = (qp + diff * q[t, :]) / (1 + diff)
            p /= 1 + diff
    return p


@pytest.mark.parametrize("k", [2, 3, 6])
def test_pairwise_coupling_is_libsvms_minimum(k):
    """The exact solve equals libsvm's iterative coupling within its stopping tolerance, and satisfies the
    optimality conditions Q p = b 1, sum p = 1 exactly."""
    from hsicls.models.classic import couple_pairwise, pairwise_matrix

    rng = np.random.default_rng(k)
    r = pairwise_matrix(torch.from_numpy(rng.uniform(0.02, 0.98, (50, k * (k - 1) // 2))), k)
    p = couple_pairwise(r).numpy()
    ref = np.array([_libsvm_multiclass_probability(ri) for ri in r.numpy()])
    np.testing.assert_allclose(p, ref, atol=0.005)
    assert np.all(p >= 0) and np.allclose(p.sum(1), 1)
    rn = r.numpy()
    q = np.stack([np.diag((ri**2).sum(0)) - ri.T * ri for ri in rn])
    qp = np.einsum("bij,bj->bi", q, p)
    np.testing.assert_allclose(qp, qp[:, :1].repeat(k, 1), atol=1e-9)
    if k == 2:
        np.testing.assert_allclose(p[:, 0], rn[:, 0, 1], atol=1e-12)  # two classes: p_0 = r_01


def test_platt_fit_recovers_a_sigmoid():
    from hsicls.models.classic import fit_platt

    rng = np.random.default_rng(0)
    dec = rng.normal(0, 2, 20_000)
    pos = rng.random(dec.size) < 1 / (1 + np.exp(-1.5 * dec + 0.4))  # A = -1.5, B = 0.4
    a, b = fit_platt(dec, pos)
    assert a == pytest.approx(-1.5, abs=0.08) and b == pytest.approx(0.4, abs=0.08)


def test_rf_module_reproduces_sklearn():
    """The forest returns log-probabilities: softmax gives predict_proba back exactly (not a second softmax)."""
    from sklearn.ensemble import RandomForestClassifier

    from hsicls.models.classic import fit_rf

    x, y = _blobs()
    xv, yv = _blobs(seed=1)
    m, _ = fit_rf(x, y, xv, yv, 4, 5, log=lambda *_: None, n_trees=25)
    ref = RandomForestClassifier(n_estimators=25, random_state=5, n_jobs=1).fit(x, y)
    out = m(torch.from_numpy(xv)[:, :, None, None])
    np.testing.assert_allclose(torch.softmax(out, 1).numpy(), ref.predict_proba(xv), atol=1e-6)
    assert (out.argmax(1).numpy() == ref.predict(xv)).all()


def test_stem_training_path_equals_conv3d():
    from hsicls.models.md2f import InitialExtractor

    torch.manual_seed(0)
    for stride in (1, 2):
        stem = InitialExtractor(11, 16, c3=4, spectral_stride=stride)
        x = torch.randn(3, 11, 7, 7)
        ref = stem.conv3d(x.unsqueeze(1))  # (B, c3, bands', P, P)
        y = stem._conv3d_as_2d(x)  # (B * bands', c3, P, P)
        torch.testing.assert_close(y.view(3, -1, 4, 7, 7).transpose(1, 2), ref, atol=1e-5, rtol=1e-5)
        stem.train()  # the whole training path (reordered channels, BN over the view) equals the 3-D one
        ref_out = stem.act(stem.bn2d(stem.conv2d(stem.act(stem.bn3d(ref)).flatten(1, 2))))
        torch.testing.assert_close(stem(x), ref_out, atol=1e-5, rtol=1e-5)
        stem.eval()  # and the inference path with BatchNorm folded equals the plain modules in eval mode
        with torch.no_grad():
            ref_eval = stem.act(stem.bn2d(stem.conv2d(stem.act(stem.bn3d(stem.conv3d(x.unsqueeze(1)))).flatten(1, 2))))
            torch.testing.assert_close(stem(x), ref_eval, atol=1e-5, rtol=1e-5)


def test_gfe_inference_equals_equations():
    """HSM-GFE in eval mode (H factored out of Eq. 13, BN folded) equals Eq. 9-13 written out."""
    from hsicls.models.md2f import HSMGFE

    torch.manual_seed(4)
    g = HSMGFE(8, 7, state=6)
    g.train()
    g(torch.randn(10, 8, 7, 7))  # running statistics
    g.eval()
    x = torch.randn(3, 8, 7, 7)
    with torch.no_grad():
        xh = g.pos(x).permute(0, 2, 3, 1)
        f = g.dw(g.expand(g.norm(xh)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        theta, lam, psi = g.select(f).chunk(3, dim=-1)
        hh, z = g.gate(g.global_state(f, theta, lam)).chunk(2, dim=-1)
        ft = (hh * torch.nn.functional.silu(z) + hh * g.phi) * psi
        ref = g.bn(g.out(ft).permute(0, 3, 1, 2))
        torch.testing.assert_close(g(x), ref, atol=1e-5, rtol=1e-5)
