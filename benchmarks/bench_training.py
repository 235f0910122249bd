"""One training epoch of the DMN LSTM as a ratio to one no-grad forward pass over the same data."""

import _common  # noqa: I001  (first: pins the threads before numpy, numba and torch load)
import time

import torch

from kit import data, features, training
from kit.models import DeepMomentumLSTM, DMNConfig

if __name__ == "__main__":
    _common.header("one training epoch of the DMN LSTM against one forward pass")
    prices, _, _ = data.load_universe(n_symbols=60, universe_as_of="2004-12-31", start="2004-01-01")
    close = data.to_wide(prices, "close")
    X, names = features.stack_features(features.dmn_features(close))
    y, _ = features.next_day_target(close)
    tr = features.make_sequences(X, y.to_numpy(), 0, len(close) - 300, 63)
    va = features.make_sequences(X, y.to_numpy(), len(close) - 300, len(close) - 1, 63)
    torch.manual_seed(0)
    model = DeepMomentumLSTM(DMNConfig(n_features=len(names), hidden_size=20))
    Xt = torch.as_tensor(tr[0])

    def forward():
        with torch.no_grad():
            model(Xt)

    with _common.case("forward and epoch") as c:
        t = time.perf_counter()
        forward()
        ref = time.perf_counter() - t
        t = time.perf_counter()
        training.Trainer(training.TrainConfig(epochs=1, batch_size=256, patience=1)).fit(model, tr, va)
        got = time.perf_counter() - t
    if c["ok"]:
        print(f"{len(Xt)} sequences of 63 days x {len(names)} features")
        print(f"reference forward pass: {ref:.3f} s")
        print(f"one training epoch:     {got:.3f} s  = {got / ref:.1f} x reference")
