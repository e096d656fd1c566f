// orderflow dashboard: polls /api/dashboard (served by analytics-service) and draws four
// uPlot charts (orders, failure rate, lag in records, lag in seconds). Each chart container carries data-points="N", the number of x values it
// shows, so a headless browser (the e2e test) can tell the charts have data.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var COLORS = { orders: "#2f6fdf", failed: "#d9423a", rate: "#d98a1a",
                 inventory: "#2f6fdf", analytics: "#2e9d5b", other: "#8a5cd6" };
  var charts = {};

  function $(id) { return document.getElementById(id); }
  function fmtInt(n) { return (n === null || n === undefined) ? "\u2013" : Number(n).toLocaleString("en-US"); }
  function fmtPct(r) { return (r === null || r === undefined) ? "\u2013" : (100 * r).toFixed(1) + " %"; }
  function width(el) { return Math.max(300, el.clientWidth || 600); }

  // Create the chart in `id` on first data, update it afterwards.
  function draw(id, opts, data) {
    var el = $(id);
    var points = data[0].length;
    el.setAttribute("data-points", String(points));
    if (points === 0) { return; }
    if (!charts[id]) {
      el.textContent = "";
      opts.width = width(el);
      opts.height = 220;
      opts.legend = { live: false };
      charts[id] = new uPlot(opts, data, el);
    } else {
      charts[id].setData(data);
    }
  }

  // time axis: `pad` seconds either side, and at least `span` seconds wide (one sample would
  // otherwise be stretched over years): centred, or ending at the newest sample
  function timeRange(pad, span, right) {
    return function (u, min, max) {
      // uPlot widens a single x value by itself before calling this: use the data instead
      var xs = u.data && u.data[0];
      if (xs && xs.length > 0) { min = xs[0]; max = xs[xs.length - 1]; }
      if (min === null || max === null) { return [min, max]; }
      if (max - min < span) {
        if (right) { return [max - span, max + pad]; }
        var mid = (min + max) / 2;
        return [mid - span / 2 - pad, mid + span / 2 + pad];
      }
      return [min - pad, max + pad];
    };
  }
  // counts: from 0
  function fromZero(u, min, max) { return [0, max > 0 ? max * 1.08 : 1]; }

  function barsOrLine() {
    return (uPlot.paths && uPlot.paths.bars) ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined;
  }

  function drawOrders(doc) {
    var mins = doc.orders_per_minute || [];
    var x = [], orders = [], failed = [];
    mins.forEach(function (m) {
      x.push(Date.parse(m.minute) / 1000);
      orders.push(m.orders);
      failed.push(m.failed);
    });
    draw("chart-orders", {
      // half a minute either side, so the first and last bars are whole
      scales: { x: { time: true, range: timeRange(30, 60, false) }, y: { range: fromZero } },
      series: [{},
        { label: "orders", stroke: COLORS.orders, fill: "rgba(47,111,223,0.35)", paths: barsOrLine(), points: { show: false } },
        { label: "failed", stroke: COLORS.failed, width: 2 }],
      axes: [{ space: 80 }, { size: 60 }]
    }, [x, orders, failed]);
  }

  function drawFailureRate(doc) {
    var x = [], rate = [];
    (doc.orders_per_minute || []).forEach(function (m) {
      var decided = (m.reserved || 0) + (m.failed || 0);
      if (decided > 0) {
        x.push(Date.parse(m.minute) / 1000);
        rate.push(m.failed / decided);
      }
    });
    draw("chart-failure", {
      scales: { x: { time: true, range: timeRange(0, 60, false) }, y: { range: [0, 1] } },
      series: [{},
        { label: "failure rate", stroke: COLORS.rate, width: 2, fill: "rgba(217,138,26,0.12)",
          value: function (u, v) { return v === null ? "\u2013" : fmtPct(v); } }],
      axes: [{ space: 80 }, { size: 60, values: function (u, vals) { return vals.map(function (v) { return Math.round(v * 100) + "%"; }); } }]
    }, [x, rate]);
  }

  // one line per group over the history: `key` is "groups" (records) or "seconds"
  function lagSeries(lag, key) {
    var groups = lag.groups || [];
    var x = [], ys = groups.map(function () { return []; });
    (lag.history || []).forEach(function (p) {
      var values = p[key] || {};
      var any = groups.some(function (g) { return values[g] !== undefined; });
      if (!any) { return; }
      x.push(p.at_ms / 1000);
      groups.forEach(function (g, i) { ys[i].push(values[g] === undefined ? null : values[g]); });
    });
    var series = [{}].concat(groups.map(function (g) {
      return { label: g, stroke: COLORS[g] || COLORS.other, width: 2, spanGaps: false };
    }));
    return { series: series, data: [x].concat(ys) };
  }

  function fmtSecs(s) { return (s === null || s === undefined) ? "\u2013" : Number(s).toFixed(1) + " s"; }

  function drawLag(doc) {
    var lag = doc.lag;
    if (!lag) { return; }
    $("lag-interval").textContent = (lag.interval_ms / 1000) + " s";
    var records = lagSeries(lag, "groups");
    draw("chart-lag", { scales: { x: { time: true, range: timeRange(0, 10, true) }, y: { range: fromZero } }, series: records.series, axes: [{ space: 90 }, { size: 60 }] }, records.data);
    var secs = lagSeries(lag, "seconds");
    secs.series.forEach(function (s, i) { if (i > 0) { s.value = function (u, v) { return fmtSecs(v); }; } });
    draw("chart-lag-seconds", { scales: { x: { time: true, range: timeRange(0, 10, true) }, y: { range: fromZero } }, series: secs.series, axes: [{ space: 90 }, { size: 60, values: function (u, vals) { return vals.map(function (v) { return v + " s"; }); } }] }, secs.data);
    var last = lag.history && lag.history.length ? lag.history[lag.history.length - 1] : {};
    var latest = last.groups || {}, seconds = last.seconds || {};
    $("kpi-lag-inventory").textContent = fmtInt(latest.inventory) + (seconds.inventory === undefined ? "" : " / " + fmtSecs(seconds.inventory));
    // this analytics' own group (CONSUMER_GROUP): the second watched group
    var own = (lag.groups || [])[1] || "analytics";
    $("kpi-lag-own-label").textContent = "lag " + own;
    $("kpi-lag-analytics").textContent = fmtInt(latest[own]) + (seconds[own] === undefined ? "" : " / " + fmtSecs(seconds[own]));
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }

  function fillLagTable(doc) {
    var lag = doc.lag;
    if (!lag) { return; }
    var body = $("lag-table").tBodies[0];
    var rows = lag.latest || [];
    if (rows.length === 0) { return; }
    body.textContent = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      cell(tr, r.group); cell(tr, r.topic); cell(tr, String(r.partition), "num");
      cell(tr, r.committed === null ? "none" : fmtInt(r.committed), "num");
      cell(tr, fmtInt(r.high_watermark), "num"); cell(tr, fmtInt(r.lag), "num");
      cell(tr, r.lag_seconds === null || r.lag_seconds === undefined ? "\u2013" : Number(r.lag_seconds).toFixed(3), "num");
      body.appendChild(tr);
    });
    var errs = Object.keys(lag.errors || {}).map(function (g) { return g + ": " + lag.errors[g]; });
    $("lag-errors").textContent = errs.join("; ");
  }

  function fillReplays(doc) {
    var r = doc.replays || {};
    var body = $("replays-table").tBodies[0];
    body.textContent = "";
    $("replays-reason").textContent = r.available ? ("namespace " + (r.namespace || "(default)")) : ("Not available: " + (r.reason || "unknown"));
    (r.items || []).forEach(function (it) {
      var tr = document.createElement("tr");
      cell(tr, it.name); cell(tr, it.consumer_group); cell(tr, it.reset_to);
      var ph = cell(tr, "");
      var span = document.createElement("span");
      span.className = "phase " + it.phase;
      span.textContent = it.phase;
      ph.appendChild(span);
      cell(tr, it.message); cell(tr, it.completed_at || "");
      body.appendChild(tr);
    });
    if (r.available && (r.items || []).length === 0) {
      var tr = document.createElement("tr");
      cell(tr, "no ReplayRequests in this namespace").colSpan = 6;
      body.appendChild(tr);
    }
  }

  function el(parent, tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) { e.textContent = text; }
    if (cls) { e.className = cls; }
    parent.appendChild(e);
    return e;
  }

  function progress(c) {
    if (!c) { return "catch-up not measured yet"; }
    var pct = c.records_total > 0 ? " (" + (100 * c.records_done / c.records_total).toFixed(1) + " %)" : "";
    var s = fmtInt(c.records_done) + " of " + fmtInt(c.records_total) + " records" + pct + ", " + fmtInt(c.records_left) + " left";
    if (c.records_per_second !== null && c.records_per_second !== undefined) { s += ", " + fmtInt(Math.round(c.records_per_second)) + "/s"; }
    if (c.caught_up_at) { s += ", caught up at " + c.caught_up_at; } else if (c.eta) { s += ", ETA " + c.eta; }
    return s;
  }

  // A running shadow replay (not removed): its phase, progress, and its numbers beside this
  // dashboard's own current ones (and the live numbers the controller recorded with them).
  function fillShadows(doc) {
    var box = $("replays-shadows");
    box.textContent = "";
    ((doc.replays || {}).items || []).forEach(function (it) {
      var sh = it.shadow;
      if (!sh || !sh.running) { return; }
      var d = el(box, "div", undefined, "shadow-box");
      var h = el(d, "h3", "shadow " + (sh.consumer_group || it.name) + " ");
      el(h, "span", it.phase, "phase " + it.phase);
      el(d, "p", progress(sh.catch_up) + (sh.promote ? (sh.promoted ? "; promoted at " + sh.promoted_at : "; promotes when caught up") : ""), "progress");
      var t = el(d, "table");
      var head = el(t, "tr");
      ["", "orders", "failure rate"].forEach(function (x) { el(head, "th", x); });
      var rows = [["shadow" + (sh.metrics_at ? " (at " + sh.metrics_at + ")" : ""), sh.shadow_metrics],
                  ["live, now", { orders_total: doc.orders_total, failure_rate: doc.failure_rate }]];
      if (sh.live_metrics) { rows.push(["live (at " + sh.metrics_at + ")", sh.live_metrics]); }
      rows.forEach(function (r) {
        var tr = el(t, "tr");
        el(tr, "td", r[0]);
        el(tr, "td", r[1] ? fmtInt(r[1].orders_total) : "\u2013", "num");
        el(tr, "td", r[1] ? fmtPct(r[1].failure_rate) : "\u2013", "num");
      });
    });
  }

  function render(doc) {
    $("kpi-orders").textContent = fmtInt(doc.orders_total);
    $("kpi-reserved").textContent = fmtInt(doc.reserved_total);
    $("kpi-failed").textContent = fmtInt(doc.failed_total);
    $("kpi-rate").textContent = fmtPct(doc.failure_rate);
    $("kpi-restocked").textContent = fmtInt(doc.restocked_units_total || 0);
    $("kpi-restocked").title = fmtInt(doc.restocks_total || 0) + " restocks applied, " +
      fmtInt(doc.restocks_refused_total || 0) + " refused";
    drawOrders(doc);
    drawFailureRate(doc);
    drawLag(doc);
    fillLagTable(doc);
    fillReplays(doc);
    fillShadows(doc);
  }

  function setStatus(ok, text) {
    var s = $("status");
    s.className = "status " + (ok ? "ok" : "bad");
    s.textContent = text;
  }

  function poll() {
    fetch("/api/dashboard", { cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (doc) {
        render(doc);
        setStatus(true, "updated " + new Date(doc.generated_at_ms).toLocaleTimeString("en-GB"));
      })
      .catch(function (e) { setStatus(false, "cannot reach analytics-service: " + e.message); })
      .then(function () { setTimeout(poll, POLL_MS); });
  }

  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) {
      charts[id].setSize({ width: width($(id)), height: 220 });
    });
  });
  poll();
})();
