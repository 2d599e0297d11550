/* netmetrix dashboard: filtering and sorting the fleet, a host's charts (uPlot).
 *
 * Loaded from a file: the Content-Security-Policy allows no inline script.
 * Data from hosts is only ever put into the page with textContent (uPlot's
 * legend does the same), never as HTML.
 */
(function () {
  "use strict";

  // ------------------------------------------------------------ units

  var IEC = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

  function bytes(v) {
    var a = Math.abs(v);
    var i = 0;
    while (a >= 1024 && i < IEC.length - 1) {
      a /= 1024;
      i += 1;
    }
    if (i === 0) return Math.round(v) + " B";
    return (v / Math.pow(1024, i)).toFixed(1) + " " + IEC[i];
  }

  function seconds(v) {
    var a = Math.abs(v);
    if (a === 0) return "0";
    if (a < 1) return +(v * 1000).toPrecision(3) + " ms";
    if (a < 60) return +v.toFixed(1) + " s";
    if (a < 3600) return +(v / 60).toFixed(1) + " min";
    if (a < 86400) return +(v / 3600).toFixed(1) + " h";
    return +(v / 86400).toFixed(1) + " d";
  }

  // A value in its metric's unit, as the CLI writes it (netmetrix.format.with_unit).
  function withUnit(unit, v, axis) {
    if (v === null || v === undefined) return "–";
    switch (unit) {
      case "percent":
        return (axis ? +v.toFixed(1) : v.toFixed(1)) + "%";
      case "bytes":
        return bytes(v);
      case "bytes/s":
        return bytes(v) + "/s";
      case "seconds":
        return seconds(v);
      case "":
        return axis ? String(+v.toFixed(2)) : v.toFixed(2);
      default:
        return String(+v.toFixed(3));
    }
  }

  // ------------------------------------------------------------ the fleet

  var sortKey = null;
  var sortDir = 1;

  function fleetRows() {
    return Array.prototype.slice.call(document.querySelectorAll("#fleet-table tbody tr.host"));
  }

  function sortValue(row, key, numeric) {
    var raw = row.dataset[key] || "";
    if (!numeric) return raw.toLowerCase();
    return raw === "" ? null : parseFloat(raw);
  }

  function applySort() {
    var table = document.getElementById("fleet-table");
    if (!table) return;
    var headers = table.querySelectorAll("th[data-sort]");
    var numeric = false;
    Array.prototype.forEach.call(headers, function (th) {
      var on = th.dataset.sort === sortKey;
      th.setAttribute("aria-sort", on ? (sortDir > 0 ? "ascending" : "descending") : "none");
      if (on) numeric = th.dataset.type === "number";
    });
    if (!sortKey) return;
    var rows = fleetRows();
    rows.sort(function (a, b) {
      var x = sortValue(a, sortKey, numeric);
      var y = sortValue(b, sortKey, numeric);
      if (x === y) return 0;
      if (x === null) return 1; // no value: last, whichever the direction
      if (y === null) return -1;
      return (x < y ? -1 : 1) * sortDir;
    });
    var body = table.tBodies[0];
    rows.forEach(function (row) {
      body.appendChild(row);
    });
  }

  function applyFilter() {
    var nameInput = document.getElementById("filter-name");
    var stateInput = document.getElementById("filter-state");
    if (!nameInput || !stateInput) return;
    var text = nameInput.value.trim().toLowerCase();
    var state = stateInput.value;
    var rows = fleetRows();
    var shown = 0;
    rows.forEach(function (row) {
      var ok = row.dataset.name.toLowerCase().indexOf(text) !== -1;
      if (state === "alerting") ok = ok && row.dataset.alerts !== "0";
      else if (state) ok = ok && row.dataset.state === state;
      row.hidden = !ok;
      if (ok) shown += 1;
    });
    var count = document.getElementById("filter-count");
    if (count) count.textContent = shown + " of " + rows.length + " shown";
    var none = document.getElementById("no-match");
    if (none) none.hidden = shown !== 0 || rows.length === 0;
  }

  function fleet() {
    document.addEventListener("click", function (event) {
      var th = event.target.closest("#fleet-table th[data-sort]");
      if (!th) return;
      sortDir = th.dataset.sort === sortKey ? -sortDir : 1;
      sortKey = th.dataset.sort;
      applySort();
    });
    var form = document.getElementById("filters");
    form.addEventListener("input", applyFilter);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
    });
    // htmx swapped in a fresh table: keep the user's order and filter
    document.body.addEventListener("htmx:afterSwap", function () {
      applySort();
      applyFilter();
    });
    applyFilter();
  }

  // ------------------------------------------------------------ a host's charts

  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var plots = [];
  window.netmetrixCharts = plots; // the uPlot objects, for the browser's console (and tests)
  var syncing = true; // until every chart is drawn: uPlot sets each scale once when it starts

  function isoUTC(ts) {
    return new Date(ts * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  }

  // The x axis in UTC, 24 h: "14:20", the day under the first tick of each day.
  function timeTicks(u, splits, axisIdx, space, incr) {
    var day = null;
    return splits.map(function (ts) {
      var text = new Date(ts * 1000).toISOString();
      if (incr >= 86400) return text.slice(0, 10);
      var time = incr < 60 ? text.slice(11, 19) : text.slice(11, 16);
      var today = text.slice(0, 10);
      var label = today === day ? time : time + "\n" + today;
      day = today;
      return label;
    });
  }

  function timeValue(u, ts) {
    return ts === null || ts === undefined ? "--" : new Date(ts * 1000).toISOString().slice(0, 19).replace("T", " ") + "Z";
  }

  // One chart's drag-zoom zooms them all, and the custom range fields say where.
  function zoomed(u, key) {
    if (key !== "x" || syncing) return;
    var min = u.scales.x.min;
    var max = u.scales.x.max;
    syncing = true;
    plots.forEach(function (other) {
      if (other !== u) other.setScale("x", { min: min, max: max });
    });
    syncing = false;
    var since = document.getElementById("since");
    var until = document.getElementById("until");
    if (since && until && min !== null && max !== null) {
      since.value = isoUTC(min);
      until.value = isoUTC(max);
    }
  }

  function chartWidth(figure) {
    return Math.max(280, figure.clientWidth - 12);
  }

  // From 0 (or below, for a negative value), with a little room above the highest
  // value; percentages stop at 100 when they can.
  function yRange(u, min, max) {
    var top = max > 0 ? max * 1.1 : 1;
    var unit = u.series.length > 1 && u.series[1].unit;
    if (unit === "percent" && max <= 100) top = Math.min(top, 100);
    return [Math.min(0, min), top];
  }

  function plot(container, chart, since, until) {
    var figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.metric = chart.metric;
    var title = document.createElement("figcaption");
    var name = document.createElement("strong");
    name.textContent = chart.metric;
    title.appendChild(name);
    if (chart.help) {
      var help = document.createElement("span");
      help.className = "help";
      help.textContent = " " + chart.help;
      title.appendChild(help);
    }
    figure.appendChild(title);
    container.appendChild(figure);
    var unit = chart.unit === null ? "count" : chart.unit;
    var series = [{ value: timeValue }];
    chart.series.forEach(function (s, i) {
      series.push({
        label: s.label,
        stroke: COLORS[i % COLORS.length],
        unit: unit,
        width: 1.5,
        spanGaps: true,
        value: function (u, v) {
          return withUnit(unit, v, false);
        },
      });
    });
    var options = {
      width: chartWidth(figure),
      height: 180,
      tzDate: function (ts) {
        return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
      },
      cursor: { sync: { key: "netmetrix" }, drag: { x: true, y: false } },
      scales: { x: { time: true }, y: { range: yRange } },
      series: series,
      axes: [
        { values: timeTicks },
        {
          size: 80,
          values: function (u, splits) {
            return splits.map(function (v) {
              return withUnit(unit, v, true);
            });
          },
        },
      ],
      hooks: { setScale: [zoomed] },
    };
    // The range's ends as empty points: the x axis spans the whole range asked for (a
    // double-click zooms back out to it), however few samples there are.
    var x = chart.x.slice();
    var first = x.length ? Math.min(since, x[0]) : since;
    var last = x.length ? Math.max(until, x[x.length - 1]) : until;
    x.unshift(first);
    x.push(last);
    var data = [x].concat(chart.series.map(function (s) {
      return [null].concat(s.y, [null]);
    }));
    var u = new uPlot(options, data, figure);
    plots.push(u);
    return u;
  }

  function say(container, text, className) {
    var p = document.createElement("p");
    p.className = className;
    p.textContent = text;
    container.appendChild(p);
  }

  function charts() {
    var container = document.getElementById("charts");
    if (!container) return;
    fetch(container.dataset.src, { headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.error || response.statusText);
          return body;
        });
      })
      .then(function (body) {
        container.textContent = "";
        body.charts.forEach(function (chart) {
          plot(container, chart, body.since, body.until);
        });
        // uPlot applies the first scales in a microtask: zooms count from after them
        setTimeout(function () {
          syncing = false;
        }, 0);
        if (!body.charts.length) say(container, "No samples in this range.", "empty");
        container.dataset.step = body.step;
        container.dataset.charts = body.charts.length;
        container.setAttribute("aria-busy", "false");
      })
      .catch(function (error) {
        container.textContent = "";
        say(container, "Cannot load the charts: " + error.message, "error-message");
        container.setAttribute("aria-busy", "false");
      });
    var resizing = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizing);
      resizing = setTimeout(function () {
        plots.forEach(function (u) {
          u.setSize({ width: chartWidth(u.root.parentNode), height: 180 });
        });
      }, 150);
    });
  }

  var page = document.body.dataset.page;
  if (page === "fleet") fleet();
  if (page === "host") charts();
})();
