// Draws the usage page's charts from the JSON embedded by the server (#usage-data).
// Chart.js is vendored (static/vendor/chart.umd.min.js): nothing is fetched from elsewhere.
(function () {
  "use strict";

  var dataElement = document.getElementById("usage-data");
  if (!dataElement) { return; }
  if (typeof window.Chart === "undefined") {
    var error = document.getElementById("charts-error");
    if (error) { error.hidden = false; }
    return;
  }

  var data = JSON.parse(dataElement.textContent);
  var hourly = data.bucket === "hour";
  var palette = ["#1b6a9a", "#e07a1f", "#2f9e6e", "#b23a48", "#7b5ea7", "#c9a227", "#4a8fb8", "#8a8f98"];

  function label(ts) {
    var d = new Date(ts);
    if (isNaN(d.getTime())) { return String(ts); }
    var options = hourly
      ? { hour: "2-digit", minute: "2-digit", timeZone: "UTC" }
      : { day: "numeric", month: "short", timeZone: "UTC" };
    return d.toLocaleString(undefined, options);
  }

  function numbers(values) {
    return values.map(function (v) { return parseFloat(v) || 0; });
  }

  var euro = new Intl.NumberFormat(undefined, { style: "currency", currency: "EUR", maximumFractionDigits: 4 });
  var labels = data.labels.map(label);
  var common = {
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { position: "bottom" } },
    scales: { y: { beginAtZero: true } },
  };

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) { return new window.Chart(canvas, config); }
    return null;
  }

  draw("chart-requests", {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "Requests", data: data.requests, backgroundColor: palette[0] },
        { label: "Errors", data: data.errors, backgroundColor: palette[3] },
      ],
    },
    // Requests are whole numbers: no 0.2, 0.4 … ticks.
    options: Object.assign({}, common, {
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
    }),
  });

  draw("chart-tokens", {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "Prompt", data: data.prompt_tokens, backgroundColor: palette[0] },
        { label: "Completion", data: data.completion_tokens, backgroundColor: palette[1] },
      ],
    },
    options: Object.assign({}, common, {
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
    }),
  });

  var money = {
    callbacks: {
      label: function (ctx) {
        // Doughnut slices parse to a number (named by the slice); line points to {x, y}.
        if (typeof ctx.parsed === "number") { return ctx.label + ": " + euro.format(ctx.parsed); }
        return ctx.dataset.label + ": " + euro.format(ctx.parsed.y);
      },
    },
  };

  draw("chart-cost", {
    type: "line",
    data: {
      labels: labels,
      datasets: [{
        label: "Cost (EUR)", data: numbers(data.cost_eur), borderColor: palette[2],
        backgroundColor: "rgba(47, 158, 110, 0.15)", fill: true, cubicInterpolationMode: "monotone", pointRadius: 2,
      }],
    },
    options: Object.assign({}, common, { plugins: { legend: { display: false }, tooltip: money } }),
  });

  draw("chart-cost-by-model", {
    type: "doughnut",
    data: {
      labels: data.by_model.labels,
      datasets: [{
        label: "Cost (EUR)",
        data: numbers(data.by_model.cost_eur),
        backgroundColor: data.by_model.labels.map(function (_, i) { return palette[i % palette.length]; }),
      }],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      plugins: { legend: { position: "bottom" }, tooltip: money },
    },
  });
})();
