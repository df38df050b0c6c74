"""Float64 NumPy references for the variants in ``adam_tx/variants/``, written
from the papers' algorithm boxes.

Like ``reference.py`` (whose base class, chain and side-by-side drivers they
use), they share no code with ``adam_tx``: each keeps its own state on the flat
list of leaves and returns ``update(grads, params) -> updates``, the step to
add to the parameters once chained with ``R.ScaleByLearningRate``. ``t`` is
the number of updates taken, so a step's own index is ``t`` after it is
incremented; a schedule is evaluated at the count before the step, as optax
does.
"""

from __future__ import annotations

import math

import numpy as np
import reference as R


def _zeros(leaves):
    return [np.zeros(np.shape(x), np.float64) for x in leaves]


def _value(rate, t: int) -> float:
    return float(rate(t)) if callable(rate) else float(rate)


class RAdam(R.Reference):
    """Liu et al. 2020, Algorithm 2. ``convention="optax"``: eps added to
    ``sqrt(v_hat)``, rectified when ``rho_t >= threshold``; ``"torch"``: eps
    added to ``sqrt(v_t)`` (torch.optim.RAdam), rectified when ``rho_t >
    threshold``."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0,
                 *, nesterov=False, convention="optax"):  # fmt: skip
        self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root
        self.threshold, self.nesterov, self.convention = threshold, nesterov, convention

    def init(self, params):
        super().init(params)
        self.m, self.v = _zeros(params), _zeros(params)

    def rho(self, t: int) -> tuple[float, float]:
        b2 = self.b2
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        return rho_inf - 2.0 * t * b2**t / (1.0 - b2**t), rho_inf

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        rho_t, rho_inf = self.rho(t)
        if self.convention == "torch":
            rectify = rho_t > self.threshold
        else:
            rectify = rho_t >= self.threshold
        r = 0.0
        if rectify:
            r = math.sqrt(
                (rho_t - 4) * (rho_t - 2) * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            )  # fmt: skip
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            if self.nesterov:
                look_ahead = b1 * self.m[i] / (1 - b1 ** (t + 1))
                m_hat = look_ahead + (1 - b1) * g / (1 - b1**t)
            else:
                m_hat = self.m[i] / (1 - b1**t)
            if not rectify:
                out.append(m_hat)
            elif self.convention == "torch":
                denom = (np.sqrt(self.v[i] + self.eps_root) + self.eps) / math.sqrt(
                    1 - b2**t
                )
                out.append(r * m_hat / denom)
            else:
                v_hat = self.v[i] / (1 - b2**t)
                out.append(r * m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps))
        return out


class TrustRatio(R.Reference):
    """You et al. 2020 (LAMB's layer-wise ratio), optax's options:
    ``k max(||p||, min_norm) / (max(||u||, min_norm) + eps)``, 1 if a norm is 0."""

    def __init__(self, min_norm=0.0, trust_coefficient=1.0, eps=0.0):
        self.min_norm, self.k, self.eps = min_norm, trust_coefficient, eps

    def update(self, grads, params):
        out = []
        for u, p in zip(grads, params):
            pn = max(float(np.sqrt(np.sum(p * p))), self.min_norm)
            un = max(float(np.sqrt(np.sum(u * u))), self.min_norm)
            ratio = 1.0 if pn == 0 or un == 0 else self.k * pn / (un + self.eps)
            out.append(u * ratio)
        return out


def lamb(lr, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0):
    return R.Chain(
        R.Adam(b1, b2, eps, eps_root),
        R.AddDecayedWeights(weight_decay),
        TrustRatio(),
        R.ScaleByLearningRate(lr),
    )


class Adopt(R.Reference):
    """Taniguchi et al. 2024, Algorithm 2 (with clipping): ``v_0 = g_0^2``;
    then ``m_t = b1 m + (1 - b1) clip(g_t / max(sqrt(v_{t-1}), eps), c(t))``,
    ``v_t = b2 v + (1 - b2) g_t^2``, step ``m_t`` (Nesterov: ``b1 m_t + (1 -
    b1) clip(...)``). The first call is the paper's step 0."""

    def __init__(self, b1=0.9, b2=0.9999, eps=1e-6, *, clip=lambda t: t**0.25,
                 nesterov=False):  # fmt: skip
        self.b1, self.b2, self.eps = b1, b2, eps
        self.clip, self.nesterov = clip, nesterov

    def init(self, params):
        super().init(params)
        self.m, self.v = _zeros(params), _zeros(params)

    def update(self, grads, params):
        t = self.t  # the paper's index of this gradient: 0 first
        self.t += 1
        if t == 0:
            self.v = [g * g for g in grads]
            return _zeros(grads)
        out = []
        for i, g in enumerate(grads):
            x = g / np.maximum(np.sqrt(self.v[i]), self.eps)
            if self.clip is not None:
                c = float(self.clip(t))
                x = np.clip(x, -c, c)
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * x
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
            out.append(
                self.b1 * self.m[i] + (1 - self.b1) * x if self.nesterov else self.m[i]
            )
        return out


def alpha_scheduler(alpha, warmup, alpha_start=0.0):
    """Pagliardini et al. 2024, Algorithm 1: ``f_alpha(t)``."""
    return lambda t: alpha_start + (alpha - alpha_start) * min(t / warmup, 1.0)


def b3_scheduler(b3, warmup, b_start=0.9):
    """Pagliardini et al. 2024, Algorithm 1: ``f_beta3(t)``, written with the
    half-life ``h(b) = ln(1/2) / ln(b)`` interpolated linearly."""
    half_life = lambda b: math.log(0.5) / math.log(b)  # noqa: E731

    def schedule(t):
        a = min(t / warmup, 1.0)
        h = (1 - a) * half_life(b_start) + a * half_life(b3)
        return 0.5 ** (1.0 / h)

    return schedule


class Ademamix(R.Reference):
    """Pagliardini et al. 2024, Algorithm 1 (schedules at the count before)."""

    def __init__(self, b1=0.9, b2=0.999, b3=0.9999, alpha=6.0, eps=1e-8, eps_root=0.0):
        self.b1, self.b2, self.b3, self.alpha = b1, b2, b3, alpha
        self.eps, self.eps_root = eps, eps_root

    def init(self, params):
        super().init(params)
        self.m1, self.m2, self.v = _zeros(params), _zeros(params), _zeros(params)

    def update(self, grads, params):
        b3, alpha = _value(self.b3, self.t), _value(self.alpha, self.t)
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            self.m1[i] = b1 * self.m1[i] + (1 - b1) * g
            self.m2[i] = b3 * self.m2[i] + (1 - b3) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            m1_hat = self.m1[i] / (1 - b1**t)
            v_hat = self.v[i] / (1 - b2**t)
            denom = np.sqrt(v_hat + self.eps_root) + self.eps
            out.append((m1_hat + alpha * self.m2[i]) / denom)
        return out


class Cautious(R.Reference):
    """Liang et al. 2024, Algorithm 1: ``u * [u g > 0] * d / (nnz + 1)`` per leaf,
    ``u`` the wrapped reference's update, ``g`` its input."""

    def __init__(self, direction: R.Reference):
        self.direction = direction

    def init(self, params):
        self.direction.init(params)

    def update(self, grads, params):
        out = []
        for u, g in zip(self.direction.update(grads, params), grads):
            keep = (u * g) > 0
            out.append(np.where(keep, u, 0.0) * (u.size / (np.count_nonzero(keep) + 1)))
        return out


class AdamAtan2(R.Reference):
    """Everett et al. 2024, appendix C.5: ``a atan2(m_hat, b sqrt(v_hat))``."""

    def __init__(self, b1=0.9, b2=0.999, a=1.0, b=1.0):
        self.b1, self.b2, self.a, self.b = b1, b2, a, b

    def init(self, params):
        super().init(params)
        self.m, self.v = _zeros(params), _zeros(params)

    def update(self, grads, params):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            m_hat, v_hat = self.m[i] / (1 - b1**t), self.v[i] / (1 - b2**t)
            out.append(self.a * np.arctan2(m_hat, self.b * np.sqrt(v_hat)))
        return out


class StableAdam(R.Reference):
    """Wortsman et al. 2023, Algorithm 2 (its debiased betas are Adam's bias
    correction): Adam's step divided by ``max(1, sqrt(mean(g^2 / max(v_hat,
    eps^2))))`` per leaf."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0):
        self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root

    def init(self, params):
        super().init(params)
        self.m, self.v = _zeros(params), _zeros(params)

    def update(self, grads, params):
        self.t += 1
        t, b1, b2, eps = self.t, self.b1, self.b2, self.eps
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            m_hat, v_hat = self.m[i] / (1 - b1**t), self.v[i] / (1 - b2**t)
            rms = math.sqrt(float(np.mean(g * g / np.maximum(v_hat, eps * eps))))
            step = m_hat / (np.sqrt(v_hat + self.eps_root) + eps)
            out.append(step / max(1.0, rms))
        return out


class ScheduleFreeAdamW(R.Reference):
    """Defazio et al. 2024, Algorithm 1 (AdamW form, no warmup): the three
    sequences kept apart, ``y`` the parameters.

    ``v_t = b2 v + (1 - b2) g^2``, ``z_{t+1} = z_t - lr (g / (sqrt(v_hat) + eps)
    + wd y_t)``, ``c = lr_max^p / sum lr_max^p``, ``x_{t+1} = (1 - c) x_t + c
    z_{t+1}``, ``y_{t+1} = b1 x_{t+1} + (1 - b1) z_{t+1}``.
    """

    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, power=2.0):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.wd, self.power = weight_decay, power

    def init(self, params):
        super().init(params)
        self.z = [p.copy() for p in params]
        self.x = [p.copy() for p in params]
        self.v = _zeros(params)
        self.lr_max = self.weight_sum = 0.0

    def update(self, grads, params):
        self.t += 1
        t, b1, b2, lr = self.t, self.b1, self.b2, self.lr
        self.lr_max = max(self.lr_max, lr)
        weight = self.lr_max**self.power
        self.weight_sum += weight
        c = weight / self.weight_sum if self.weight_sum else 0.0
        out = []
        for i, (g, y) in enumerate(zip(grads, params)):
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            v_hat = self.v[i] / (1 - b2**t)
            self.z[i] = self.z[i] - lr * (g / (np.sqrt(v_hat) + self.eps) + self.wd * y)
            self.x[i] = (1 - c) * self.x[i] + c * self.z[i]
            out.append(b1 * self.x[i] + (1 - b1) * self.z[i] - y)
        return out

    def eval_params(self):
        return [x.copy() for x in self.x]


def wsd(t, peak, total, warmup, decay, init=0.0, end=0.0, cooldown="1-sqrt"):
    """Hägele et al. 2024, section 3: warmup, constant, cooldown of shape ``f``."""
    if t < warmup:
        return init + (peak - init) * t / warmup
    start = total - decay
    if t < start:
        return peak
    x = min((t - start) / decay, 1.0)
    f = {
        "linear": 1 - x,
        "cosine": 0.5 * (1 + math.cos(math.pi * x)),
        "1-sqrt": 1 - math.sqrt(x),
    }[cooldown]
    return end + (peak - end) * f
