"""kit.live brokers and kit.data bar sources against a local fake Alpaca server (tests/fake_alpaca.py): no real network."""

import hashlib
import logging
import pickle
import re
import socket
import traceback
import uuid

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.data import alpaca_http, read_prices, sample_store
from kit.data.sources import BAR_COLUMNS, AlpacaBarSource, BarSource, ParquetBarSource
from kit.live import brokers
from kit.live.alpaca import AlpacaBroker
from kit.live.brokers import (
    BrokerConfigError,
    BrokerError,
    BrokerUnavailableError,
    DataSourceUnavailableError,
    Order,
    OrderNotFoundError,
    OrderRequest,
    Position,
)
from tests.fake_alpaca import FakeAlpaca

KEY = "KEYLEAK" + uuid.uuid4().hex
SECRET = "SECRETLEAK" + uuid.uuid4().hex
TIMEOUT = 0.3
BACKOFF = 0.05
SYMBOLS = ["AAPL", "KO", "MSFT"]
# 2020-08-20..2021-04-21 holds AAPL's 4:1 split (2020-08-31), KO's dividends and both DST changes.
START, END = "2020-08-20", "2021-04-21"


@pytest.fixture(scope="module")
def store_bars():
    return read_prices(sample_store(), symbols=SYMBOLS, start=START, end=END)


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)


@pytest.fixture
def sleeps(monkeypatch):
    """Record the retry loop's waits instead of sleeping."""
    waits = []
    monkeypatch.setattr(alpaca_http, "_sleep", waits.append)
    return waits


@pytest.fixture
def fake(store_bars):
    server = FakeAlpaca(KEY, SECRET, bars=store_bars, page_size=100)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker(fake, keys, sleeps):
    b = AlpacaBroker(base_url=fake.url, timeout=TIMEOUT, max_retries=3, backoff=BACKOFF)
    yield b
    b.close()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def orders_with(fake, coid):
    return [o for o in fake.orders.values() if o["client_order_id"] == coid]


# ---------------------------------------------------------------- records
def test_order_request_validates_fields():
    assert OrderRequest("AAPL", "buy", 3, "c1").qty == 3.0
    for kw, field in [
        ({"side": "long"}, "side"),
        ({"qty": 0}, "qty"),
        ({"qty": -1.0}, "qty"),
        ({"qty": float("nan")}, "qty"),
        ({"qty": "x"}, "qty"),
        ({"client_order_id": ""}, "client_order_id"),
        ({"client_order_id": "x" * 129}, "client_order_id"),
        ({"symbol": " AAPL"}, "symbol"),
        ({"type": "limit"}, "type"),
        ({"time_in_force": "week"}, "time_in_force"),
    ]:
        args = {"symbol": "AAPL", "side": "buy", "qty": 1.0, "client_order_id": "c", **kw}
        with pytest.raises(ValueError, match=field):
            OrderRequest(**args)
    with pytest.raises(ValueError, match="status"):
        Order("id", "c", "AAPL", "buy", 1.0, status="accepted")


@settings(max_examples=50)
@given(st.floats(min_value=-1e6, max_value=1e6).filter(lambda x: x != 0))
def test_from_delta_signs(delta):
    req = OrderRequest.from_delta("AAPL", delta, "c")
    assert req.signed_qty == delta
    assert req.side == ("buy" if delta > 0 else "sell") and req.qty == abs(delta)


def test_from_delta_refuses_zero():
    with pytest.raises(ValueError, match="delta"):
        OrderRequest.from_delta("AAPL", 0.0, "c")


def test_client_order_id_is_deterministic():
    a = brokers.client_order_id("2021-04-21", "AAPL", "buy", "dmn-v1")
    assert a == brokers.client_order_id("2021-04-21", "AAPL", "buy", "dmn-v1")
    assert a == "kit-" + hashlib.sha256(b"2021-04-21|AAPL|buy|dmn-v1").hexdigest()[:32]
    assert a != brokers.client_order_id("2021-04-21", "AAPL", "sell", "dmn-v1")
    assert re.fullmatch(r"kit-[0-9a-f]{32}", a)
    with pytest.raises(ValueError, match="part"):
        brokers.client_order_id()


def test_broker_is_an_interface():
    with pytest.raises(TypeError):
        brokers.Broker()
    assert {"account", "positions", "submit", "cancel", "order_status", "get_order_by_client_id", "open_orders"} <= set(
        brokers.Broker.__abstractmethods__
    )


# ---------------------------------------------------------------- round trips
def test_account_positions_orders_round_trip(broker, fake):
    assert broker.account() == brokers.Account(cash=100_000.0, equity=100_000.0, buying_power=100_000.0)
    assert broker.positions() == {}
    order = broker.submit(OrderRequest("AAPL", "buy", 10, "c-aapl"))
    assert uuid.UUID(order.id) and order.client_order_id == "c-aapl"
    assert (order.symbol, order.side, order.qty, order.status, order.broker_status) == ("AAPL", "buy", 10.0, "submitted", "accepted")
    assert order.filled_qty == 0.0 and order.filled_avg_price is None and order.is_open
    assert order.submitted_at is not None and order.submitted_at.utcoffset().total_seconds() == 0
    assert [o.id for o in broker.open_orders()] == [order.id]

    fake.fill(order.id, 131.0, qty=4)
    part = broker.order_status(order.id)
    assert (part.status, part.filled_qty, part.filled_avg_price) == ("partially_filled", 4.0, 131.0)
    fake.fill(order.id, 132.5)
    done = broker.order_status(order.id)
    assert (done.status, done.filled_qty, done.is_open) == ("filled", 10.0, False)
    assert done.filled_avg_price == pytest.approx((4 * 131.0 + 6 * 132.5) / 10, rel=1e-15)
    assert broker.open_orders() == []
    assert broker.positions() == {"AAPL": Position("AAPL", 10.0, done.filled_avg_price, 10 * 132.5)}
    # cash 100000 - 4*131 - 6*132.5 = 98681; equity = cash + 10 * last price 132.5
    assert broker.account() == brokers.Account(cash=98_681.0, equity=98_681.0 + 1325.0, buying_power=98_681.0)

    short = broker.submit(OrderRequest.from_delta("KO", -5, "c-ko"))
    fake.fill(short.id, 50.0)
    ko = broker.positions()["KO"]
    assert (ko.qty, ko.avg_entry_price, ko.market_value) == (-5.0, 50.0, -250.0)
    assert list(broker.positions()) == ["AAPL", "KO"]


def test_submit_twice_with_one_client_order_id_places_one_order(broker, fake):
    first = broker.submit(OrderRequest("MSFT", "buy", 2, "once"))
    again = broker.submit(OrderRequest("MSFT", "buy", 2, "once"))
    assert again == first
    assert fake.count("POST", "/v2/orders") == 1 and len(orders_with(fake, "once")) == 1
    assert broker.get_order_by_client_id("once") == first
    assert broker.get_order_by_client_id("never-used") is None
    with pytest.raises(BrokerError, match="already names order"):
        broker.submit(OrderRequest("KO", "buy", 2, "once"))
    assert fake.count("POST", "/v2/orders") == 1


@pytest.mark.parametrize(
    "alpaca_status, filled, expected",
    [
        ("new", 0, "submitted"),
        ("pending_new", 0, "submitted"),
        ("done_for_day", 1, "partially_filled"),
        ("pending_cancel", 0, "submitted"),
        ("expired", 0, "cancelled"),
        ("replaced", 0, "cancelled"),
        ("rejected", 0, "rejected"),
    ],
)
def test_alpaca_statuses_map_to_the_kit_vocabulary(broker, fake, alpaca_status, filled, expected):
    order = broker.submit(OrderRequest("KO", "buy", 3, "st"))
    if filled:
        fake.fill(order.id, 50.0, qty=filled)
    fake.set_status(order.id, alpaca_status)
    got = broker.order_status(order.id)
    assert (got.status, got.broker_status) == (expected, alpaca_status)
    assert (got.reject_reason is not None) == (expected == "rejected")


def test_cancel(broker, fake):
    order = broker.submit(OrderRequest("KO", "sell", 3, "to-cancel"))
    cancelled = broker.cancel(order.id)
    assert (cancelled.id, cancelled.status, cancelled.broker_status) == (order.id, "cancelled", "canceled")
    assert broker.open_orders() == []
    filled = broker.submit(OrderRequest("KO", "buy", 1, "filled-first"))
    fake.fill(filled.id, 49.0)
    assert broker.cancel(filled.id).status == "filled"  # HTTP 422 not cancelable: the fill stands
    unknown = str(uuid.uuid4())
    with pytest.raises(OrderNotFoundError, match=unknown):
        broker.cancel(unknown)
    with pytest.raises(OrderNotFoundError):
        broker.order_status(unknown)
    with pytest.raises(ValueError, match="order_id"):
        broker.order_status("not-a-uuid")


# ---------------------------------------------------------------- rejections
def test_rejected_orders_carry_the_reason(broker, fake):
    poor = broker.submit(OrderRequest("AAPL", "buy", 10_000, "too-big"))
    assert (poor.status, poor.id, poor.is_open) == ("rejected", None, False)
    assert poor.reject_reason == "HTTP 403: insufficient buying power"
    unknown = broker.submit(OrderRequest("ZZZZ", "buy", 1, "no-such-asset"))
    assert unknown.status == "rejected" and unknown.reject_reason == 'HTTP 422: asset "ZZZZ" not found'
    assert fake.orders == {}
    assert fake.count("POST", "/v2/orders") == 2  # a refusal is not retried


# ---------------------------------------------------------------- retries
def test_http_429_is_retried_with_exponential_backoff(broker, fake, sleeps):
    fake.inject("GET", "/v2/account", "status", times=3, status=429, message="too many requests")
    assert broker.account().cash == 100_000.0
    assert fake.count("GET", "/v2/account") == 4
    # alpaca-py's own retry (fixed 3 s sleeps) is off: the waits are the kit's, doubling
    assert sleeps == [BACKOFF, 2 * BACKOFF, 4 * BACKOFF]


def test_backoff_is_capped(fake, keys, sleeps):
    b = AlpacaBroker(base_url=fake.url, timeout=TIMEOUT, max_retries=4, backoff=1.0, backoff_max=2.5)
    fake.inject("GET", "/v2/positions", "status", times=4, status=503, message="service unavailable")
    assert b.positions() == {}
    assert sleeps == [1.0, 2.0, 2.5, 2.5]


def test_http_429_exhausted_raises_unavailable(broker, fake, sleeps):
    fake.inject("GET", "/v2/account", "status", times=10, status=429, message="too many requests")
    with pytest.raises(BrokerUnavailableError, match="HTTP 429") as err:
        broker.account()
    assert err.value.attempts == 4 and fake.count("GET", "/v2/account") == 4
    assert "unavailable" in str(err.value) and "3 retries" in str(err.value)
    assert len(sleeps) == 3


def test_timeout_then_success(broker, fake):
    fake.inject("GET", "/v2/positions", "sleep", times=1, seconds=2.0)
    assert broker.positions() == {}
    assert fake.count("GET", "/v2/positions") == 2


def test_timeouts_exhausted_raise_unavailable(fake, keys, sleeps):
    b = AlpacaBroker(base_url=fake.url, timeout=TIMEOUT, max_retries=2, backoff=BACKOFF)
    fake.inject("GET", "/v2/positions", "sleep", times=10, seconds=2.0)
    with pytest.raises(BrokerUnavailableError, match=r"timed out after 0\.3 s") as err:
        b.positions()
    assert err.value.attempts == 3 and fake.count("GET", "/v2/positions") == 3
    assert sleeps == [BACKOFF, 2 * BACKOFF]


@pytest.mark.parametrize("when", ["after_headers", "mid_body"])
def test_connection_dropped_after_the_order_was_placed_gives_no_duplicate(broker, fake, when):
    fake.inject("POST", "/v2/orders", "drop", when=when)
    order = broker.submit(OrderRequest("MSFT", "buy", 1, f"drop-{when}"))
    assert fake.count("POST", "/v2/orders") == 1  # found by client_order_id, not resubmitted
    assert [o["id"] for o in orders_with(fake, f"drop-{when}")] == [order.id]
    assert order.status == "submitted"


def test_connection_dropped_before_the_order_was_placed_resubmits_once(broker, fake):
    fake.inject("POST", "/v2/orders", "drop", when="before")
    order = broker.submit(OrderRequest("MSFT", "buy", 1, "drop-before"))
    assert fake.count("POST", "/v2/orders") == 2
    assert [o["id"] for o in orders_with(fake, "drop-before")] == [order.id]


def test_submit_timing_out_after_placement_gives_no_duplicate(broker, fake):
    fake.inject("POST", "/v2/orders", "sleep", when="after", seconds=2.0)
    order = broker.submit(OrderRequest("KO", "buy", 2, "slow"))
    assert fake.count("POST", "/v2/orders") == 1 and len(orders_with(fake, "slow")) == 1
    assert order.id == orders_with(fake, "slow")[0]["id"]


def test_submit_rate_limited_is_resubmitted_after_a_look_up(broker, fake, sleeps):
    fake.inject("POST", "/v2/orders", "status", times=2, status=429, message="too many requests")
    order = broker.submit(OrderRequest("KO", "buy", 2, "limited"))
    assert fake.count("POST", "/v2/orders") == 3
    # one look-up before the first POST, one after each failed POST
    assert fake.count("GET", "/v2/orders:by_client_order_id") == 3
    assert [o["id"] for o in orders_with(fake, "limited")] == [order.id]
    assert sleeps == [BACKOFF, 2 * BACKOFF]


def test_submit_failing_throughout_places_nothing_and_says_so(broker, fake):
    fake.inject("POST", "/v2/orders", "status", times=10, status=503, message="service unavailable")
    with pytest.raises(BrokerUnavailableError, match="nothing was placed"):
        broker.submit(OrderRequest("KO", "buy", 2, "down"))
    assert fake.count("POST", "/v2/orders") == 4 and fake.orders == {}


def test_submit_with_unknown_outcome_is_reconciled_by_client_order_id(broker, fake):
    # the POST goes through but its answer is lost, and then the look-ups fail too
    fake.inject("POST", "/v2/orders", "drop", when="after_headers")
    fake.inject("GET", "/v2/orders:by_client_order_id", "status", times=100, after=1, status=503, message="down")
    with pytest.raises(BrokerUnavailableError, match="unknown"):
        broker.submit(OrderRequest("AAPL", "buy", 1, "crash-day"))
    fake.faults.clear()
    # the next run: the order is found by its client order id and not placed again
    found = broker.get_order_by_client_id("crash-day")
    assert found is not None and found.status == "submitted"
    assert broker.submit(OrderRequest("AAPL", "buy", 1, "crash-day")) == found
    assert fake.count("POST", "/v2/orders") == 1 and len(orders_with(fake, "crash-day")) == 1


def test_duplicate_client_order_id_answer_returns_the_existing_order(broker, fake):
    theirs = broker.submit(OrderRequest("KO", "buy", 1, "raced"))
    # the first look-up misses the order (a concurrent submit), so the POST hits Alpaca's 422
    fake.inject("GET", "/v2/orders:by_client_order_id", "status", status=404, message="order not found")
    assert broker.submit(OrderRequest("KO", "buy", 1, "raced")) == theirs
    assert fake.count("POST", "/v2/orders") == 2 and len(orders_with(fake, "raced")) == 1


# ---------------------------------------------------------------- configuration and offline
def test_missing_keys_name_the_variables(monkeypatch):
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    with pytest.raises(BrokerConfigError, match="APCA_API_KEY_ID, APCA_API_SECRET_KEY"):
        AlpacaBroker()
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", "  ")
    with pytest.raises(BrokerConfigError, match=r"variable\(s\) APCA_API_SECRET_KEY not set") as err:
        AlpacaBroker()
    assert KEY not in str(err.value)
    with pytest.raises(BrokerConfigError, match="MY_KEY, MY_SECRET"):
        AlpacaBarSource(key_env="MY_KEY", secret_env="MY_SECRET")


def test_live_trading_is_refused(keys):
    with pytest.raises(BrokerConfigError, match="paper"):
        AlpacaBroker(paper=False)


def test_bad_arguments(keys):
    for kw, field in [({"timeout": 0}, "timeout"), ({"max_retries": -1}, "max_retries"), ({"backoff": -1}, "backoff"), ({"base_url": "ftp://x"}, "base_url")]:
        with pytest.raises(ValueError, match=field):
            AlpacaBroker(**kw)
    with pytest.raises(ValueError, match="feed"):
        AlpacaBarSource(feed="nasdaq")


def test_refused_keys_raise_config_error(fake, monkeypatch, sleeps):
    monkeypatch.setenv("APCA_API_KEY_ID", "wrong-key-id-123")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong-secret-456")
    b = AlpacaBroker(base_url=fake.url, timeout=TIMEOUT, max_retries=3, backoff=BACKOFF)
    with pytest.raises(BrokerConfigError, match=r"\$APCA_API_KEY_ID and \$APCA_API_SECRET_KEY .*HTTP 401"):
        b.account()
    assert fake.count("GET", "/v2/account") == 1 and sleeps == []


def test_offline_broker_raises_a_clear_error(keys, sleeps):
    url = closed_port_url()
    b = AlpacaBroker(base_url=url, timeout=TIMEOUT, max_retries=2, backoff=BACKOFF)
    with pytest.raises(BrokerUnavailableError, match="offline") as err:
        b.account()
    msg = str(err.value)
    assert url in msg and "GET /v2/account failed 3 time(s)" in msg and "ConnectionError" in msg
    assert err.value.attempts == 3 and sleeps == [BACKOFF, 2 * BACKOFF]
    with pytest.raises(BrokerUnavailableError, match="by_client_order_id"):
        b.submit(OrderRequest("AAPL", "buy", 1, "offline"))  # no POST before the look-up answers


# ---------------------------------------------------------------- secrets
def test_keys_never_leak(fake, keys, caplog, capsys, sleeps):
    caplog.set_level(logging.DEBUG)
    errors = []

    def expect(exc_type, fn):
        with pytest.raises(exc_type) as err:
            fn()
        assert type(err.value) is exc_type
        errors.append(err.value)
        fake.faults.clear()

    b = AlpacaBroker(base_url=fake.url, timeout=TIMEOUT, max_retries=1, backoff=BACKOFF)
    src = AlpacaBarSource(base_url=fake.url, timeout=TIMEOUT, max_retries=1, backoff=BACKOFF)
    offline = AlpacaBroker(base_url=closed_port_url(), timeout=TIMEOUT, max_retries=1, backoff=BACKOFF)
    offline_src = AlpacaBarSource(base_url=closed_port_url(), timeout=TIMEOUT, max_retries=1, backoff=BACKOFF)
    rejected = b.submit(OrderRequest("AAPL", "buy", 1e6, "leak-reject"))
    fake.inject("GET", "/v2/account", "status", times=5, status=429, message="too many requests")
    expect(BrokerUnavailableError, b.account)
    fake.inject("GET", "/v2/positions", "sleep", times=5, seconds=1.0)
    expect(BrokerUnavailableError, b.positions)
    fake.inject("POST", "/v2/orders", "drop", when="after_headers")
    fake.inject("GET", "/v2/orders:by_client_order_id", "drop", times=5, after=1, when="mid_body")
    expect(BrokerUnavailableError, lambda: b.submit(OrderRequest("AAPL", "buy", 1, "leak-drop")))
    expect(OrderNotFoundError, lambda: b.order_status(str(uuid.uuid4())))
    fake.inject("GET", "/v2/account", "status", status=400, message="bad request")
    expect(BrokerError, b.account)
    expect(BrokerUnavailableError, offline.account)
    expect(DataSourceUnavailableError, lambda: offline_src.bars(["AAPL"], "2021-01-04", "2021-01-08"))
    fake.api_key = "rotated"
    expect(BrokerConfigError, b.account)
    expect(BrokerConfigError, lambda: src.bars(["AAPL"], "2021-01-04", "2021-01-08"))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("APCA_API_SECRET_KEY")
        expect(BrokerConfigError, AlpacaBroker)
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(b)

    texts = [repr(rejected), repr(b), repr(src), repr(offline), str(vars(b)), str(vars(src))]
    for e in errors:
        texts += [str(e), repr(e), "".join(traceback.format_exception(e))]
        chained = e
        while chained is not None:  # nothing from alpaca-py/requests (they hold the key headers) hangs on
            assert isinstance(chained, BrokerError), type(chained)
            chained = chained.__cause__ or chained.__context__
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
    out = capsys.readouterr()
    texts += [out.out, out.err]
    assert len(errors) == 10 and any(r.name in ("kit.data.alpaca_http", "kit.live.alpaca") for r in caplog.records)
    assert any("urllib3" in r.name for r in caplog.records)  # the HTTP library's debug log was captured too
    for text in texts:
        assert KEY not in text and SECRET not in text


# ---------------------------------------------------------------- bar sources
def test_alpaca_bars_equal_the_parquet_store(fake, keys, store_bars):
    parquet = ParquetBarSource(sample_store())
    alpaca = AlpacaBarSource(base_url=fake.url, timeout=TIMEOUT, backoff=BACKOFF, symbols_per_request=2)
    assert isinstance(parquet, BarSource) and isinstance(alpaca, BarSource)
    want = parquet.bars(SYMBOLS, START, END)
    got = alpaca.bars(["MSFT", "AAPL", "KO"], START, END)
    assert list(got.columns) == list(BAR_COLUMNS) == list(want.columns)
    assert dict(got.dtypes) == dict(want.dtypes)
    assert len(want) == len(store_bars) > 400
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # paging and both adjustments were used, on the free IEX feed, daily
    queries = fake.bar_queries
    assert len(queries) > 4 and {q["adjustment"] for q in queries} == {"raw", "all"}
    assert {q["feed"] for q in queries} == {"iex"} and {q["timeframe"] for q in queries} == {"1Day"}
    assert any(q.get("page_token") for q in queries)
    # a window across the March DST change, and one without data
    pd.testing.assert_frame_equal(
        alpaca.bars(["KO"], "2021-03-10", "2021-03-17"), parquet.bars(["KO"], "2021-03-10", "2021-03-17"), check_exact=True
    )
    empty = alpaca.bars(["KO"], "2030-01-01", "2030-01-31")
    assert empty.empty and dict(empty.dtypes) == dict(parquet.bars(["KO"], "2030-01-01", "2030-01-31").dtypes)


def test_alpaca_bars_retry_and_refuse_offline(fake, keys, sleeps):
    src = AlpacaBarSource(base_url=fake.url, timeout=TIMEOUT, max_retries=2, backoff=BACKOFF)
    fake.inject("GET", "/v2/stocks/bars", "status", times=2, status=429, message="too many requests")
    assert len(src.bars(["AAPL"], "2021-01-04", "2021-01-08")) == 5
    assert sleeps == [BACKOFF, 2 * BACKOFF]
    with pytest.raises(ValueError, match="start"):
        src.bars(["AAPL"])
    with pytest.raises(ValueError, match="before"):
        src.bars(["AAPL"], "2021-01-08", "2021-01-04")
    with pytest.raises(ValueError, match="symbols"):
        src.bars([], "2021-01-04")
    offline = AlpacaBarSource(base_url=closed_port_url(), timeout=TIMEOUT, max_retries=1, backoff=BACKOFF)
    with pytest.raises(DataSourceUnavailableError, match="market data API .* unavailable .*ParquetBarSource") as err:
        offline.bars(["AAPL"], "2021-01-04", "2021-01-08")
    assert isinstance(err.value, BrokerUnavailableError) and err.value.attempts == 2
    # the committed store keeps working offline
    assert len(ParquetBarSource(sample_store()).bars(["AAPL"], "2021-01-04", "2021-01-08")) == 5
