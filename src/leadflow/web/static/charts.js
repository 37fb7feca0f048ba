// Charts of the analytics page, drawn from data- attributes (CSP: script-src 'self', no inline script).
"use strict";

// <span class="bar" data-share="42.5">: a bar 42.5 % of its track wide.
function drawBars(root) {
  root.querySelectorAll(".bar[data-share]").forEach((bar) => {
    bar.style.width = `${Number(bar.getAttribute("data-share")) || 0}%`;
  });
}

// <div data-chart="days" data-x='["2025-10-01", ...]' data-y='[3, ...]'>: leads per day (uPlot).
function drawDays(node) {
  if (typeof window.uPlot !== "function" || node.dataset.rendered) return;
  const days = JSON.parse(node.getAttribute("data-x") || "[]");
  const counts = JSON.parse(node.getAttribute("data-y") || "[]");
  const x = days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  const width = Math.max(280, node.clientWidth || 320);
  const options = {
    width,
    height: 220,
    tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [{}, { label: "Leads" }],
    series: [{ label: "Day" }, { label: "Leads", stroke: "#1f5fa8", fill: "rgba(31,95,168,0.12)", width: 2 }],
    legend: { show: true },
  };
  new window.uPlot(options, [x, counts], node);
  node.dataset.rendered = String(counts.reduce((a, b) => a + b, 0));
}

document.addEventListener("DOMContentLoaded", () => {
  drawBars(document);
  document.querySelectorAll('[data-chart="days"]').forEach(drawDays);
});
