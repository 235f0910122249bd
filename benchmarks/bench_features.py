"""dmn_features on the whole committed store, as a ratio to one pandas rolling std of the same frame."""

import time

from kit import data, features


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


if __name__ == "__main__":
    prices, _ = data.load_prices()
    close = data.to_wide(prices, "close")
    ref = best_of(lambda: close.rolling(63).std())
    got = best_of(lambda: features.dmn_features(close))
    print(f"frame {close.shape[0]} days x {close.shape[1]} symbols")
    print(f"reference rolling(63).std(): {ref:.3f} s")
    print(f"dmn_features:                {got:.3f} s  = {got / ref:.1f} x reference")
