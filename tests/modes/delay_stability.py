"""Why stale gradients and momentum do not mix: the largest step heavy-ball SGD survives on a quadratic.

On f(x) = lambda x^2 / 2 with learning rate eta and momentum mu, where a fraction p_d of each step's gradient was computed
on weights d versions old (d = 0 is Sync), the iteration is

    x[t+1] = x[t] + mu (x[t] - x[t-1]) - a * sum_d p_d x[t-d],    a = eta * lambda,

which converges for every start exactly when all roots of its characteristic polynomial
z^(D+1) - (1 + mu) z^D + mu z^(D-1) + a sum_d p_d z^(D-d) lie inside the unit circle. This prints, per momentum, the
largest a for which they do (bisection), for Sync (2 (1 + mu)), for the staleness BoundedStaleness showed on the main
job, for every gradient one version old (1 - mu), and for Async with 3 workers (two versions old on average).

Usage: /usr/bin/python3 tests/modes/delay_stability.py   (numpy: Debian's python3-numpy)
"""
import numpy as np


def stable(a, mu, p):
    """True when the iteration with a = eta * lambda, momentum mu and staleness fractions p converges."""
    degree = max(len(p), 2)  # D + 1 with D = len(p) - 1, at least 2 for the momentum term
    c = np.zeros(degree + 1)  # c[k]: coefficient of z^(degree - k)
    c[0] += 1
    c[1] -= 1 + mu
    c[2] += mu
    for d, fraction in enumerate(p):
        c[1 + d] += a * fraction
    return max(abs(np.roots(c))) < 1


def largest_stable_step(mu, p):
    low, high = 0.0, 10.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if stable(middle, mu, p) else (low, middle)
    return low


CASES = [
    ("Sync", [1.0]),
    ("BoundedStaleness s=2 as measured (0.23 fresh, 0.63 one old, 0.14 two old)", [0.23, 0.63, 0.14]),
    ("every gradient one version old", [0.0, 1.0]),
    ("every gradient two versions old (Async, 3 workers, on average)", [0.0, 0.0, 1.0]),
]

if __name__ == "__main__":
    print("| momentum | " + " | ".join(name for name, _ in CASES) + " |")
    print("|---" * (len(CASES) + 1) + "|")
    for mu in (0.9, 0.5, 0.23, 0.0):
        sync = largest_stable_step(mu, [1.0])
        cells = [f"{largest_stable_step(mu, p):.3f} ({largest_stable_step(mu, p) / sync:.2f}x)" for _, p in CASES]
        print(f"| {mu} | " + " | ".join(cells) + " |")
