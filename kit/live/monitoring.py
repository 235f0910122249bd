"""Metrics of the kit's scheduled jobs for Prometheus, and a webhook for the daily command's alert.

How a batch job is monitored
----------------------------
The daily step and a profile run are short-lived, scheduled, *service-level* batch jobs: they are not
tied to one machine and exit before Prometheus could scrape them. Prometheus' guidance ("When to use
the Pushgateway", prometheus.io/docs/practices/pushing/) is to push such a job's metrics, at its
end, to a Pushgateway that Prometheus scrapes with ``honor_labels: true``; the node exporter's
textfile collector is meant for *machine-level* jobs (a cron job about its own host). So the default
here is the Pushgateway; the textfile collector is supported as an option for a machine without one
(``textfile_dir``: the folder given to ``--collector.textfile.directory``).

Per Prometheus' instrumentation guidance for batch jobs (prometheus.io/docs/practices/instrumentation/
#batch-jobs; the Pushgateway documentation's batch-job example), the key metric is the time of the
last success, pushed only when the run succeeded, with ``pushadd`` (HTTP POST: replaces only the
metric names pushed, in the job's group) so that a failed run keeps the previous success time.
Every metric is a **gauge**, including per-run counts such as orders: a counter's value must only
grow for the life of a process (``rate()`` treats a drop as a reset), but each run of a batch job is
a new process starting from zero, and the Pushgateway "is explicitly not an aggregator or
distributed counter but rather a metrics cache" (its README). A run's order count is therefore a
gauge named without ``_total`` (``kit_paper_orders{state="filled"}``: orders of the last run), not a
``_total`` counter. Names follow Prometheus' naming conventions (prometheus.io/docs/practices/naming/):
a ``kit_`` prefix, base units in the name (``_seconds``, ``_dollars``, ``_ratio`` for 0-1 fractions,
``_timestamp_seconds`` for Unix times), and labels for model, check and subject; the job, profile and
account are the Pushgateway grouping key (``job`` plus ``grouping``), constant for a job so that
each run replaces the previous one's series.

The metrics (keys of the ``metrics`` mapping given to :func:`publish`)
---------------------------------------------------------------------
=========================== =================================================== ==========================
key                          metric(s)                                            value
=========================== =================================================== ==========================
status                       kit_run_success; kit_run_last_success_timestamp_     ``"success"`` or
                             seconds (success only); kit_run_finished_timestamp_  ``"failed"`` (required)
                             seconds
finished_at                  (time of the two timestamps above; default: now)     datetime or Unix seconds
duration_seconds             kit_run_duration_seconds                             float >= 0
as_of                        kit_run_as_of_timestamp_seconds                      date (the run's trading day)
last_data_date               kit_data_last_date_timestamp_seconds                 date (00:00 UTC)
rows_ingested                kit_data_rows_ingested                               int >= 0
validation_findings          kit_data_validation_findings{severity}               {severity: int >= 0}
positions                    kit_paper_positions                                  int >= 0 (open positions)
gross_exposure_dollars       kit_paper_gross_exposure_dollars                     float >= 0
net_exposure_dollars         kit_paper_net_exposure_dollars                       float
equity_dollars               kit_paper_equity_dollars                             float
daily_pnl_dollars            kit_paper_daily_pnl_dollars                          float
drawdown_ratio               kit_paper_drawdown_ratio                             float in [0, 1], below peak
drawdown_limit_ratio         kit_paper_drawdown_limit_ratio                       float in (0, 1] (with the above)
orders                       kit_paper_orders{state}                              {state: int >= 0}, e.g. sent,
                                                                                  filled, rejected
models                       kit_model_info{model, scope, version} = 1            list of {model, scope, version}
ledger                       kit_ledger_direction_accuracy_ratio, kit_ledger_     list of {model, window_days,
                             mape_ratio, kit_ledger_outcomes {model, window_days} n, direction_accuracy, mape}
gate                         kit_gate_min_direction_accuracy_ratio, kit_gate_     {min_direction_accuracy,
                             max_mape_ratio                                       max_mape}
drift                        kit_drift_value, kit_drift_threshold, kit_drift_p_   list of kit.analytics.drift.
                             value, kit_drift_verdict{check, subject, verdict}    DriftCheck (or dicts)
stages                       kit_run_stage_duration_seconds{stage}, kit_run_      {stage: {seconds, status
                             stage_success{stage}                                 "ok" or "failed"}}
needs_person                 kit_daily_needs_person                               bool (daily loop: exit 3)
alerts                       kit_daily_alerts{kind}                               {kind: int >= 0}
retrain                      kit_retrain_last_as_of_timestamp_seconds, kit_       {as_of: date, promoted:
                             retrain_promoted (only when a retraining ran)        bool}
=========================== =================================================== ==========================

``kit_drift_verdict`` is a state set: one series per verdict (``drift``, ``ok``,
``insufficient_data``), 1 for the check's verdict and 0 for the others.

Failures
--------
Bad metric values are a programming error and raise ``ValueError`` before anything is sent. Network
and file-system failures while publishing, and any failure of :func:`send_webhook`, are logged as
warnings and reported by a ``False`` return: monitoring never stops the job it watches.

Who publishes: :func:`kit.live.loop.run_daily` (job ``kit_daily``, grouping ``profile`` and
``account``) and every profile run through :func:`publish_profile_run` (job ``kit_profile``, grouping
``profile``), called once at the end of :func:`kit.reports.runs.run_profile`.

Imports from the kit: :func:`kit.base.jsonable` only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest, pushadd_to_gateway
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ..base.jsonable import jsonable

__all__ = [
    "METRICS",
    "METRIC_KEYS",
    "PUSHGATEWAY_ENV",
    "TEXTFILE_ENV",
    "WEBHOOK_ENV",
    "build_registry",
    "publish",
    "textfile_path",
    "send_webhook",
    "exposition",
    "publish_profile_run",
]

log = logging.getLogger(__name__)

PUSHGATEWAY_ENV = "KIT_PUSHGATEWAY_URL"
TEXTFILE_ENV = "KIT_TEXTFILE_DIR"
WEBHOOK_ENV = "KIT_ALERT_WEBHOOK_URL"

# name -> (help, label names); every metric is a gauge (module docstring)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kit_run_success": ("1 if the job's last run succeeded, 0 if it failed.", ()),
    "kit_run_last_success_timestamp_seconds": ("Unix time the job last finished successfully.", ()),
    "kit_run_finished_timestamp_seconds": ("Unix time the job's last run finished (success or failure).", ()),
    "kit_run_duration_seconds": ("Wall-clock duration of the job's last run.", ()),
    "kit_run_as_of_timestamp_seconds": ("The trading day of the last run (00:00 UTC), as Unix time.", ()),
    "kit_data_last_date_timestamp_seconds": ("The last date of the price data (00:00 UTC), as Unix time.", ()),
    "kit_data_rows_ingested": ("Price rows ingested by the last run.", ()),
    "kit_data_validation_findings": ("Data validation findings of the last run, by severity.", ("severity",)),
    "kit_paper_positions": ("Open positions after the last run.", ()),
    "kit_paper_gross_exposure_dollars": ("Gross exposure (sum of absolute position values) after the last run.", ()),
    "kit_paper_net_exposure_dollars": ("Net exposure (sum of signed position values) after the last run.", ()),
    "kit_paper_equity_dollars": ("Account equity at the last run's close.", ()),
    "kit_paper_daily_pnl_dollars": ("Profit and loss of the last trading day.", ()),
    "kit_paper_drawdown_ratio": ("Drawdown of equity below its running peak, as a fraction of the peak.", ()),
    "kit_paper_drawdown_limit_ratio": ("The profile's drawdown limit, as a fraction of the peak.", ()),
    "kit_paper_orders": ("Orders of the last run, by state (a per-run count: a gauge, not a counter).", ("state",)),
    "kit_model_info": ("The model version in use (value 1; the version is in the labels).", ("model", "scope", "version")),
    "kit_ledger_direction_accuracy_ratio": ("Rolling live direction accuracy of a model over the ledger window.", ("model", "window_days")),
    "kit_ledger_mape_ratio": ("Rolling live mean absolute percentage error of a model's price forecasts.", ("model", "window_days")),
    "kit_ledger_outcomes": ("Filled ledger outcomes in a model's rolling window.", ("model", "window_days")),
    "kit_gate_min_direction_accuracy_ratio": ("The promotion gate's minimum direction accuracy.", ()),
    "kit_gate_max_mape_ratio": ("The promotion gate's maximum MAPE.", ()),
    "kit_drift_value": ("A drift check's statistic (PSI, KS D, drifting features, accuracy, MAPE).", ("check", "subject")),
    "kit_drift_threshold": ("The threshold a drift check's statistic or p-value is held against.", ("check", "subject")),
    "kit_drift_p_value": ("A drift check's p-value (Holm-adjusted for ks).", ("check", "subject")),
    "kit_drift_verdict": ("A drift check's verdict as a state set: 1 for the current verdict.", ("check", "subject", "verdict")),
    "kit_run_stage_duration_seconds": ("Wall-clock duration of a stage of the job's last run.", ("stage",)),
    "kit_run_stage_success": ("1 if a stage of the job's last run succeeded, 0 if it failed.", ("stage",)),
    "kit_daily_needs_person": ("1 if the daily loop's last run found something that needs a person (exit status 3).", ()),
    "kit_daily_alerts": ("Alerts of the daily loop's last run, by kind (a per-run count: a gauge).", ("kind",)),
    "kit_retrain_last_as_of_timestamp_seconds": ("The trading day of the last retraining (00:00 UTC), as Unix time.", ()),
    "kit_retrain_promoted": ("1 if the last retraining's model passed the gate and went live, 0 if the gate refused it.", ()),
}

METRIC_KEYS = ("status", "finished_at", "duration_seconds", "as_of", "last_data_date", "rows_ingested", "validation_findings", "positions",
               "gross_exposure_dollars", "net_exposure_dollars", "equity_dollars", "daily_pnl_dollars", "drawdown_ratio",
               "drawdown_limit_ratio", "orders", "models", "ledger", "gate", "drift", "stages", "needs_person", "alerts", "retrain")
_VERDICTS = ("drift", "ok", "insufficient_data")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _num(key: str, v, *, lo: float | None = None, hi: float | None = None, integer: bool = False) -> float:
    if isinstance(v, bool) or v is None:
        raise ValueError(f"metrics[{key!r}] must be a number, got {v!r}")
    try:
        x = float(v)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metrics[{key!r}] must be a number, got {v!r}") from exc
    if not math.isfinite(x):
        raise ValueError(f"metrics[{key!r}] must be finite, got {v!r}")
    if integer and x != int(x):
        raise ValueError(f"metrics[{key!r}] must be a whole number, got {v!r}")
    if lo is not None and x < lo:
        raise ValueError(f"metrics[{key!r}] must be >= {lo}, got {v!r}")
    if hi is not None and x > hi:
        raise ValueError(f"metrics[{key!r}] must be <= {hi}, got {v!r}")
    return x


def _date_seconds(key: str, v) -> float:
    if isinstance(v, dt.datetime):
        d = v.date()
    elif isinstance(v, dt.date):
        d = v
    else:
        try:
            d = dt.date.fromisoformat(str(v)[:10])
        except ValueError as exc:
            raise ValueError(f"metrics[{key!r}] must be a date, got {v!r}") from exc
    return float(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp())


def _time_seconds(key: str, v) -> float:
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            raise ValueError(f"metrics[{key!r}] must be a timezone-aware datetime, got naive {v!r}")
        return float(v.timestamp())
    return _num(key, v, lo=0)


def _field(item, name: str, key: str):
    if isinstance(item, Mapping):
        if name not in item:
            raise ValueError(f"metrics[{key!r}] item lacks {name!r}: {item!r}")
        return item[name]
    try:
        return getattr(item, name)
    except AttributeError as exc:
        raise ValueError(f"metrics[{key!r}] item lacks {name!r}: {item!r}") from exc


def build_registry(metrics: Mapping) -> CollectorRegistry:
    """A new CollectorRegistry holding the gauges of one run, from ``metrics`` (module docstring).

    Parameters
    ----------
    metrics : mapping
        Keys from :data:`METRIC_KEYS`; ``status`` is required. Absent keys publish nothing (a failed
        run can publish just ``status`` and ``duration_seconds``).

    Returns
    -------
    prometheus_client.CollectorRegistry (one per job run: nothing global is touched).

    Raises
    ------
    ValueError
        An unknown key (named), a missing ``status``, a value of the wrong type or range (named),
        ``drawdown_ratio`` without ``drawdown_limit_ratio``, or an invalid label value.
    """
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a mapping, got {type(metrics).__name__}")
    unknown = sorted(set(metrics) - set(METRIC_KEYS))
    if unknown:
        raise ValueError(f"unknown metric key(s) {unknown}; allowed: {list(METRIC_KEYS)}")
    status = metrics.get("status")
    if status not in ("success", "failed"):
        raise ValueError(f"metrics['status'] must be 'success' or 'failed', got {status!r}")
    if "drawdown_ratio" in metrics and "drawdown_limit_ratio" not in metrics:
        raise ValueError("metrics['drawdown_ratio'] needs metrics['drawdown_limit_ratio'] (the drawdown alert compares the two)")
    reg = CollectorRegistry(auto_describe=True)
    gauges: dict[str, Gauge] = {}

    def g(name: str) -> Gauge:
        if name not in gauges:
            help_, labels = METRICS[name]
            gauges[name] = Gauge(name, help_, labelnames=labels, registry=reg)
        return gauges[name]

    finished = _time_seconds("finished_at", metrics["finished_at"]) if metrics.get("finished_at") is not None else time.time()
    g("kit_run_success").set(1.0 if status == "success" else 0.0)
    g("kit_run_finished_timestamp_seconds").set(finished)
    if status == "success":
        g("kit_run_last_success_timestamp_seconds").set(finished)
    simple = {
        "duration_seconds": ("kit_run_duration_seconds", {"lo": 0}),
        "rows_ingested": ("kit_data_rows_ingested", {"lo": 0, "integer": True}),
        "positions": ("kit_paper_positions", {"lo": 0, "integer": True}),
        "gross_exposure_dollars": ("kit_paper_gross_exposure_dollars", {"lo": 0}),
        "net_exposure_dollars": ("kit_paper_net_exposure_dollars", {}),
        "equity_dollars": ("kit_paper_equity_dollars", {}),
        "daily_pnl_dollars": ("kit_paper_daily_pnl_dollars", {}),
        "drawdown_ratio": ("kit_paper_drawdown_ratio", {"lo": 0, "hi": 1}),
        "drawdown_limit_ratio": ("kit_paper_drawdown_limit_ratio", {"lo": 0, "hi": 1}),
    }
    for key, (name, bounds) in simple.items():
        if metrics.get(key) is not None:
            g(name).set(_num(key, metrics[key], **bounds))
    if metrics.get("drawdown_limit_ratio") is not None and metrics["drawdown_limit_ratio"] <= 0:
        raise ValueError(f"metrics['drawdown_limit_ratio'] must be > 0, got {metrics['drawdown_limit_ratio']!r}")
    if metrics.get("as_of") is not None:
        g("kit_run_as_of_timestamp_seconds").set(_date_seconds("as_of", metrics["as_of"]))
    if metrics.get("last_data_date") is not None:
        g("kit_data_last_date_timestamp_seconds").set(_date_seconds("last_data_date", metrics["last_data_date"]))
    for key, name, label in (("validation_findings", "kit_data_validation_findings", "severity"), ("orders", "kit_paper_orders", "state")):
        if metrics.get(key) is None:
            continue
        if not isinstance(metrics[key], Mapping):
            raise ValueError(f"metrics[{key!r}] must be a mapping {label} -> count, got {type(metrics[key]).__name__}")
        for lab, v in metrics[key].items():
            if not str(lab):
                raise ValueError(f"metrics[{key!r}] has an empty {label}")
            g(name).labels(**{label: str(lab)}).set(_num(f"{key}[{lab!r}]", v, lo=0, integer=True))
    for item in metrics.get("models") or ():
        g("kit_model_info").labels(model=str(_field(item, "model", "models")), scope=str(_field(item, "scope", "models")),
                                   version=str(_field(item, "version", "models"))).set(1.0)
    for item in metrics.get("ledger") or ():
        labels = {"model": str(_field(item, "model", "ledger")), "window_days": str(int(_num("ledger.window_days", _field(item, "window_days", "ledger"), lo=1)))}
        g("kit_ledger_outcomes").labels(**labels).set(_num("ledger.n", _field(item, "n", "ledger"), lo=0, integer=True))
        for field, name in (("direction_accuracy", "kit_ledger_direction_accuracy_ratio"), ("mape", "kit_ledger_mape_ratio")):
            v = item.get(field) if isinstance(item, Mapping) else getattr(item, field, None)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                g(name).labels(**labels).set(_num(f"ledger.{field}", v, lo=0))
    if metrics.get("gate") is not None:
        gate = metrics["gate"]
        g("kit_gate_min_direction_accuracy_ratio").set(_num("gate.min_direction_accuracy", _field(gate, "min_direction_accuracy", "gate"), lo=0, hi=1))
        g("kit_gate_max_mape_ratio").set(_num("gate.max_mape", _field(gate, "max_mape", "gate"), lo=0))
    for item in metrics.get("drift") or ():
        labels = {"check": str(_field(item, "check", "drift")), "subject": str(_field(item, "subject", "drift"))}
        verdict = str(_field(item, "verdict", "drift"))
        if verdict not in _VERDICTS:
            raise ValueError(f"metrics['drift'] verdict must be one of {_VERDICTS}, got {verdict!r} ({labels})")
        for field, name in (("value", "kit_drift_value"), ("threshold", "kit_drift_threshold"), ("p_value", "kit_drift_p_value")):
            v = item.get(field) if isinstance(item, Mapping) else getattr(item, field, None)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                g(name).labels(**labels).set(_num(f"drift.{field}", v))
        for v in _VERDICTS:
            g("kit_drift_verdict").labels(**labels, verdict=v).set(1.0 if v == verdict else 0.0)
    for stage, item in (metrics.get("stages") or {}).items():
        if not str(stage):
            raise ValueError("metrics['stages'] has an empty stage name")
        if item.get("seconds") is not None:
            g("kit_run_stage_duration_seconds").labels(stage=str(stage)).set(_num(f"stages[{stage!r}].seconds", item["seconds"], lo=0))
        if item.get("status") is not None:
            if item["status"] not in ("ok", "failed"):
                raise ValueError(f"metrics['stages'][{stage!r}]['status'] must be 'ok' or 'failed', got {item['status']!r}")
            g("kit_run_stage_success").labels(stage=str(stage)).set(1.0 if item["status"] == "ok" else 0.0)
    if metrics.get("needs_person") is not None:
        if not isinstance(metrics["needs_person"], bool):
            raise ValueError(f"metrics['needs_person'] must be true or false, got {metrics['needs_person']!r}")
        g("kit_daily_needs_person").set(1.0 if metrics["needs_person"] else 0.0)
    if metrics.get("alerts") is not None:
        if not isinstance(metrics["alerts"], Mapping):
            raise ValueError(f"metrics['alerts'] must be a mapping kind -> count, got {type(metrics['alerts']).__name__}")
        for kind, v in metrics["alerts"].items():
            g("kit_daily_alerts").labels(kind=str(kind)).set(_num(f"alerts[{kind!r}]", v, lo=0, integer=True))
    if metrics.get("retrain") is not None:
        r = metrics["retrain"]
        g("kit_retrain_last_as_of_timestamp_seconds").set(_date_seconds("retrain.as_of", _field(r, "as_of", "retrain")))
        promoted = _field(r, "promoted", "retrain")
        if not isinstance(promoted, bool):
            raise ValueError(f"metrics['retrain']['promoted'] must be true or false, got {promoted!r}")
        g("kit_retrain_promoted").set(1.0 if promoted else 0.0)
    return reg


def _check_grouping(job: str, grouping: Mapping | None) -> dict[str, str]:
    if not job or not isinstance(job, str):
        raise ValueError(f"job must be a non-empty string, got {job!r}")
    out = {}
    for k, v in (grouping or {}).items():
        if not _LABEL_NAME.match(str(k)) or str(k).startswith("__") or k == "job":
            raise ValueError(f"grouping label name {k!r} is not a valid Prometheus label name (or is 'job')")
        if v is None or str(v) == "":
            raise ValueError(f"grouping label {k!r} must have a non-empty value, got {v!r}")
        out[str(k)] = str(v)
    return out


def textfile_path(textfile_dir, job: str, grouping: Mapping | None = None) -> Path:
    """The ``.prom`` file of a job and grouping in a textfile-collector folder:
    ``<dir>/kit_<job>[__<key>_<value>...].prom`` (characters other than letters, digits, ``-`` and
    ``_`` replaced by ``_``)."""
    parts = [job] + [f"{k}_{v}" for k, v in sorted(_check_grouping(job, grouping).items())]
    name = "__".join(re.sub(r"[^A-Za-z0-9_-]", "_", p) for p in parts)
    return Path(textfile_dir) / f"kit_{name}.prom"


class _Relabelled:
    """A collector yielding the families of ``registry`` with ``labels`` added to every sample, then
    the families of ``previous`` whose names the registry does not have (pushadd semantics)."""

    def __init__(self, registry, labels: dict[str, str], previous: list[Metric]):
        self.registry, self.labels, self.previous = registry, labels, previous

    def collect(self):
        names = set()
        for fam in self.registry.collect():
            names.add(fam.name)
            out = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            out.samples = [s._replace(labels={**s.labels, **self.labels}) for s in fam.samples]
            yield out
        for fam in self.previous:
            if fam.name not in names:
                yield fam


def _write_textfile(path: Path, registry, job: str, grouping: dict[str, str]) -> None:
    from prometheus_client import write_to_textfile

    previous = []
    if path.exists():
        try:
            previous = list(text_string_to_metric_families(path.read_text()))
        except Exception as exc:  # a corrupt file is replaced, not fatal
            log.warning("kit.live.monitoring: could not parse the previous metrics file %s (%s); replacing it", path, exc)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = CollectorRegistry(auto_describe=False)
    out.register(_Relabelled(registry, {"job": job, **grouping}, previous))
    write_to_textfile(str(path), out)


def publish(metrics: Mapping, *, job: str, grouping: Mapping | None = None, pushgateway_url: str | None = None,
            textfile_dir: str | os.PathLike | None = None, timeout: float = 10.0) -> bool:
    """Publish one run's metrics: pushadd to a Pushgateway and/or write a textfile-collector file.

    Parameters
    ----------
    metrics : mapping
        See the module docstring and :func:`build_registry`.
    job : str
        The ``job`` label, e.g. ``"kit_daily"`` or ``"kit_profile"``.
    grouping : mapping str -> str, optional
        Further grouping-key labels, constant from run to run of the same job, e.g.
        ``{"profile": "paper", "account": "paper"}`` (never a run id or a host: each run must replace
        the previous one's series).
    pushgateway_url : str, optional
        e.g. ``http://127.0.0.1:9091`` (default ``$KIT_PUSHGATEWAY_URL``). The metrics are sent with
        HTTP POST to ``/metrics/job/<job>/<key>/<value>...``: metric names in the push replace the
        same names in the group, others (the last success time, after a failed run) are kept.
    textfile_dir : path, optional
        A node-exporter textfile-collector folder (default ``$KIT_TEXTFILE_DIR``): writes
        :func:`textfile_path` atomically, with ``job`` and the grouping labels on every sample and the
        same keep-the-rest semantics (the previous file's other metric names are carried over).
    timeout : float
        Seconds for the HTTP request (> 0).

    Returns
    -------
    bool
        True when every configured destination took the metrics; False when one failed (logged as a
        warning, never raised) or when no destination is configured (logged at INFO).

    Raises
    ------
    ValueError
        Invalid metrics, job, grouping labels or timeout: programming errors, raised before anything
        is sent.
    """
    if not (timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    grouping = _check_grouping(job, grouping)
    registry = build_registry(metrics)
    pushgateway_url = pushgateway_url or os.environ.get(PUSHGATEWAY_ENV) or None
    textfile_dir = textfile_dir or os.environ.get(TEXTFILE_ENV) or None
    if pushgateway_url is None and textfile_dir is None:
        log.info("kit.live.monitoring: no Pushgateway URL or textfile folder configured (%s, %s); metrics of job %s not published",
                 PUSHGATEWAY_ENV, TEXTFILE_ENV, job)
        return False
    ok = True
    if pushgateway_url is not None:
        try:
            pushadd_to_gateway(pushgateway_url, job=job, registry=registry, grouping_key=grouping, timeout=timeout)
        except Exception as exc:  # network, HTTP status, DNS: logged, never raised into the job
            log.warning("kit.live.monitoring: push of job %s %s to %s failed: %s: %s", job, grouping, pushgateway_url, type(exc).__name__, exc)
            ok = False
    if textfile_dir is not None:
        path = textfile_path(textfile_dir, job, grouping)
        try:
            _write_textfile(path, registry, job, grouping)
        except Exception as exc:  # a full disk or a read-only folder must not stop the job either
            log.warning("kit.live.monitoring: writing %s failed: %s: %s", path, type(exc).__name__, exc)
            ok = False
    return ok


def exposition(metrics: Mapping) -> str:
    """The metrics of :func:`build_registry` in Prometheus' text exposition format (for a look, or
    for ``promtool check metrics``)."""
    return generate_latest(build_registry(metrics)).decode()


def send_webhook(url: str | None, payload: Mapping, *, timeout: float = 5.0) -> bool:
    """POST ``payload`` as JSON to ``url`` (default ``$KIT_ALERT_WEBHOOK_URL``): the daily command's own
    alert.

    Parameters
    ----------
    url : str or None
        The webhook's URL (http or https). None and no environment variable: nothing is sent.
    payload : mapping
        JSON-serialisable; numpy scalars as numbers, NaN and infinities as null, dates and other
        objects as their ``str()``.
    timeout : float
        Seconds for connecting and for reading the answer (> 0).

    Returns
    -------
    bool
        True on a 2xx answer; False when no URL is set, or on any failure (timeout, refused
        connection, an HTTP error status), which is logged as a warning and never raised.

    Raises
    ------
    ValueError
        ``timeout`` not > 0, or ``payload`` not a mapping (programming errors).
    """
    import requests

    if not (timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not isinstance(payload, Mapping):
        raise ValueError(f"payload must be a mapping, got {type(payload).__name__}")
    url = url or os.environ.get(WEBHOOK_ENV) or None
    if url is None:
        log.info("kit.live.monitoring: no webhook URL configured (%s); alert not sent", WEBHOOK_ENV)
        return False
    body = json.dumps(jsonable(dict(payload)), allow_nan=False)
    try:
        r = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout)
        r.raise_for_status()
    except Exception as exc:
        log.warning("kit.live.monitoring: webhook POST to %s failed: %s: %s", url, type(exc).__name__, exc)
        return False
    return True


def publish_profile_run(run_dir, info: Mapping) -> bool:
    """Publish a profile run's metrics (job ``kit_profile``, grouping ``profile``): status, duration
    and per-stage durations and statuses, from the run's ``run.json`` contents ``info``. Never raises:
    any failure is logged as a warning and returns False, so a run is never failed by its monitoring.

    The Pushgateway URL is the profile's ``monitor.pushgateway_url`` (read from the run's
    ``params.yaml``, the profile as run) when set, else ``$KIT_PUSHGATEWAY_URL``; the textfile folder
    likewise (``monitor.textfile_dir``, ``$KIT_TEXTFILE_DIR``). Nothing configured: nothing is sent.

    Parameters
    ----------
    run_dir : the run's folder.
    info : the run's record (``status`` ``ok``/``failed``/``interrupted``, ``seconds``,
        ``finished_utc``, ``profile``, ``notebooks`` {stem: {status, seconds}}).

    Returns
    -------
    bool: True when every configured destination took the metrics.
    """
    try:
        import yaml

        monitor = {}
        params = Path(run_dir) / "params.yaml"
        if params.exists():
            monitor = (yaml.safe_load(params.read_text()) or {}).get("monitor") or {}
        url = str(monitor.get("pushgateway_url") or "") or None
        textfile = str(monitor.get("textfile_dir") or "") or None
        if not (url or textfile or os.environ.get(PUSHGATEWAY_ENV) or os.environ.get(TEXTFILE_ENV)):
            return False
        finished = info.get("finished_utc")
        stages = {str(k): {"seconds": v.get("seconds"), "status": "ok" if v.get("status") == "ok" else "failed"}
                  for k, v in (info.get("notebooks") or {}).items() if v.get("status") in ("ok", "failed")}
        metrics = {
            "status": "success" if info.get("status") == "ok" else "failed",
            "finished_at": dt.datetime.fromisoformat(finished) if finished else None,
            "duration_seconds": info.get("seconds"),
            "stages": stages,
        }
        return publish(metrics, job="kit_profile", grouping={"profile": str(info.get("profile") or "unknown")}, pushgateway_url=url,
                       textfile_dir=textfile)
    except Exception as exc:  # noqa: BLE001 - monitoring never fails the run it watches
        log.warning("kit.live.monitoring: metrics of run %s not published: %s: %s", Path(run_dir).name, type(exc).__name__, exc)
        return False
