// The console's few scripts: the Now page's live table, the Machine page's charts (uPlot, vendored).
"use strict";

(function liveEpisodes() {
  const body = document.getElementById("episodes");
  if (!body) return;
  const refresh = async () => {
    // a planner typing into a form in the table keeps it: skip this round
    if (body.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
    try {
      const r = await fetch(body.dataset.src, { headers: { "Accept": "text/html" }, credentials: "same-origin" });
      if (r.status === 401) { location.reload(); return; }
      if (r.ok) { body.innerHTML = await r.text(); body.dataset.updated = String(Date.now()); }
    } catch (e) { /* the service restarting: try again next round */ }
  };
  setInterval(refresh, 5000);
})();

(function machineCharts() {
  const src = document.getElementById("series");
  const box = document.getElementById("charts");
  if (!src || !box || typeof uPlot === "undefined") return;
  const s = JSON.parse(src.textContent);
  const width = Math.max(400, Math.min(box.clientWidth || 1000, 1200));
  const colours = { critical: "rgba(200,30,30,0.15)", warning: "rgba(230,150,0,0.15)", info: "rgba(60,120,200,0.10)" };

  // Episodes as shaded bands, maintenance as vertical lines: drawn on every chart, same time axis.
  const marks = {
    hooks: {
      drawClear: [(u) => {
        const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
        for (const e of s.episodes) {
          const x0 = u.valToPos(Math.max(e.start, s.start), "x", true);
          const x1 = u.valToPos(Math.min(e.end || s.end, s.end), "x", true);
          ctx.fillStyle = colours[e.severity] || colours.info;
          ctx.fillRect(x0, top, Math.max(2, x1 - x0), h);
        }
        for (const m of s.maintenance) {
          const x = u.valToPos(m.t, "x", true);
          ctx.strokeStyle = m.kind === "failure" ? "#c00" : "#888";
          ctx.lineWidth = 2;
          ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
        }
      }],
    },
  };
  const xScale = { time: true, min: s.start, max: s.end };
  const chart = (title, x, series, ys, id, axes) => {
    const div = document.createElement("div");
    div.className = "chart"; div.id = id;
    box.appendChild(div);
    const opts = {
      title, width, height: 220, plugins: [marks],
      scales: { x: xScale },
      series: [{}].concat(series),
      axes: axes || [{}, { size: 60 }],
    };
    const u = new uPlot(opts, [x].concat(ys), div);
    div.dataset.points = String(x.length);
    div.dataset.drawn = String(u.data[0].length);
    return u;
  };
  const r = s.risk;
  chart("p(failure) and anomaly score", r.t, [
    { label: "p(failure)", stroke: "#c33", width: 2 },
    { label: "alert threshold", stroke: "#c33", dash: [4, 4] },
    { label: "anomaly score", stroke: "#36c", scale: "a" },
    { label: "anomaly threshold", stroke: "#36c", dash: [4, 4], scale: "a" },
  ], [r.p_failure, r.threshold, r.anomaly_score, r.anomaly_threshold], "chart-risk",
  [{}, { size: 60, label: "p(failure)" }, { scale: "a", side: 1, size: 60, label: "anomaly score", grid: { show: false } }]);
  s.sensors.forEach((f, i) => {
    const low = f.t.map(() => f.low), high = f.t.map(() => f.high);
    chart(`${f.feature} (${f.unit})`, f.t, [
      { label: f.feature, stroke: "#333", width: 1.5 },
      { label: "low limit", stroke: "#c00", dash: [6, 4], show: f.low !== null },
      { label: "high limit", stroke: "#c00", dash: [6, 4], show: f.high !== null },
    ], [f.v, low, high], `chart-sensor-${i}`);
  });
  box.dataset.ready = "1";
})();
