// The usage page's charts: spend per day and per model, drawn with uPlot (static/vendor/uplot)
// from the numbers the page embeds with json_script. The tables below them hold the same
// figures for screen readers and for browsers without JavaScript.
(function () {
  "use strict";

  var source = document.getElementById("usage-chart-data");
  if (!source || !window.uPlot) return;
  var data = JSON.parse(source.textContent);

  var BAR = "rgba(37, 87, 214, 0.8)";
  var BAR_LINE = "#2557d6";
  var GRID = { stroke: "#dde3ee", width: 1 };
  var HEIGHT = 240;
  var DAY_SECONDS = 86400;

  // Money arrives as integer micro-USD; the exact text is made from the integer, like the page's
  // tables. Dollars as floats only place the bars and the axis ticks.
  function usdText(micro) {
    var sign = micro < 0 ? "-" : "";
    micro = Math.abs(micro);
    var whole = Math.floor(micro / 1e6);
    var fraction = String(micro % 1e6);
    while (fraction.length < 6) fraction = "0" + fraction;
    return sign + "$" + whole.toLocaleString("en-US") + "." + fraction;
  }

  function usdTick(dollars) {
    if (dollars === 0) return "$0";
    if (Math.abs(dollars) >= 1) return "$" + dollars.toLocaleString("en-US", { maximumFractionDigits: 2 });
    return "$" + Number(dollars.toPrecision(2)).toString();
  }

  function moneyAxis() {
    return { size: 64, grid: GRID, ticks: GRID, values: function (u, splits) { return splits.map(usdTick); } };
  }

  function costSeries(micro) {
    return {
      label: "Spend",
      fill: BAR,
      stroke: BAR_LINE,
      width: 1,
      points: { show: false },
      paths: uPlot.paths.bars({ size: [0.7, 48], align: 0 }),
      value: function (u, value, seriesIdx, idx) { return idx == null ? "–" : usdText(micro[idx]); },
    };
  }

  function draw(element, options, series) {
    options.width = Math.max(element.clientWidth, 200);
    options.height = HEIGHT;
    var chart = new uPlot(options, series, element);
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        chart.setSize({ width: Math.max(element.clientWidth, 200), height: HEIGHT });
      }).observe(element);
    }
    return chart;
  }

  var byDay = document.getElementById("chart-by-day");
  if (byDay && data.days.length) {
    var dayMicro = data.days.map(function (row) { return row.cost_micro_usd; });
    var daySeconds = data.days.map(function (row) { return Date.parse(row.day + "T00:00:00Z") / 1000; });
    draw(byDay, {
      // Days are UTC days, as in the table.
      tzDate: function (seconds) { return uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"); },
      scales: {
        x: { time: true, range: function (u, min, max) { return [min - DAY_SECONDS / 2, max + DAY_SECONDS / 2]; } },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } },
      },
      series: [{ label: "Day", value: "{YYYY}-{MM}-{DD}" }, costSeries(dayMicro)],
      axes: [{ grid: GRID, ticks: GRID }, moneyAxis()],
      cursor: { points: { show: false } },
    }, [daySeconds, dayMicro.map(function (micro) { return micro / 1e6; })]);
  }

  var byModel = document.getElementById("chart-by-model");
  if (byModel && data.models.length) {
    var modelMicro = data.models.map(function (row) { return row.cost_micro_usd; });
    var names = data.models.map(function (row) { return row.model; });
    var indexes = names.map(function (name, i) { return i; });
    var short = function (name) { return name.length > 16 ? name.slice(0, 15) + "…" : name; };
    draw(byModel, {
      scales: {
        x: { time: false, range: function () { return [-0.5, names.length - 0.5]; } },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } },
      },
      series: [
        { label: "Model", value: function (u, i) { return i == null ? "–" : names[Math.round(i)] || "–"; } },
        costSeries(modelMicro),
      ],
      axes: [
        {
          grid: { show: false },
          ticks: GRID,
          rotate: names.length > 4 ? -30 : 0,
          size: names.length > 4 ? 80 : 40,
          splits: function () { return indexes; },
          values: function (u, splits) { return splits.map(function (i) { return short(names[i] || ""); }); },
        },
        moneyAxis(),
      ],
      cursor: { points: { show: false } },
    }, [indexes, modelMicro.map(function (micro) { return micro / 1e6; })]);
  }
})();
