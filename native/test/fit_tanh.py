"""Derives the kernel's tanh coefficients (kTanhP, kTanhQ in native/kernels/kernel_impl.h).

    /usr/bin/python3 native/test/fit_tanh.py        (numpy only; prints the two C++ arrays)

tanh(x) ~ x P(x^2) / Q(x^2) on [0, LIMIT], P of degree 6, Q of degree 3 with Q(0) = 1: a
rational fit minimizing the largest relative error, by Lawson's iteration on the linearized
residual x P - f Q (each pass a weighted least-squares solve, reweighted by the last error and
by 1 / Q). The target f is tanh raised by at most RISE towards LIMIT (by RISE (x / LIMIT)^12,
under 7e-8 below x = 8): the float result at LIMIT then lies above 1 by more than any
rounding of the evaluation, so capping it at 1 gives exactly 1 there and beyond on every path.
"""

import numpy as np

LIMIT = 10.0
RISE = 1e-6
P_DEGREE, Q_DEGREE = 6, 3

x = LIMIT * (1 - np.cos(np.linspace(0, np.pi, 20000))) / 2  # denser towards both ends
x = x[x > 1e-6]
f = np.tanh(x) * (1 + RISE * (x / LIMIT) ** 12)
s = (x / LIMIT) ** 2  # the fit runs in s = (x / LIMIT)^2 in [0, 1], for conditioning
basis = np.concatenate(
    [x[:, None] * s[:, None] ** np.arange(P_DEGREE + 1), -f[:, None] * s[:, None] ** np.arange(1, Q_DEGREE + 1)],
    axis=1,
)
weights = np.ones_like(x)
q = np.ones_like(x)
for _ in range(300):
    scale = np.sqrt(weights) / (q * f)  # relative error of x P / Q - f
    coef, *_ = np.linalg.lstsq(basis * scale[:, None], f * scale, rcond=None)
    a, b = coef[: P_DEGREE + 1], np.concatenate([[1.0], coef[P_DEGREE + 1 :]])
    q = np.polyval(b[::-1], s)
    error = (x * np.polyval(a[::-1], s) / q - f) / f
    weights = weights * np.abs(error)
    weights /= weights.sum()
print(f"// relative error of the fit: {np.abs(error).max():.2g}")
# Back from s to y = x^2: the coefficient of s^i is that of y^i times LIMIT^(2i).
P = a / LIMIT ** (2 * np.arange(P_DEGREE + 1))
Q = b / LIMIT ** (2 * np.arange(Q_DEGREE + 1))
print("constexpr double kTanhP[7] = {" + ", ".join(repr(float(v)) for v in P) + "};")
print("constexpr double kTanhQ[4] = {" + ", ".join(repr(float(v)) for v in Q) + "};")
