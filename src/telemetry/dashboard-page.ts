/**
 * The live dashboard: one self-contained page (no build step, no external
 * scripts) that reads `/dashboard/events` (server-sent events, a snapshot a
 * second) and redraws its tables and bars. Text goes in with `textContent`
 * only: batch keys are user data.
 */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Sheaf worker</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2330; background: #f5f6f8; }
  body { margin: 24px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  .sub { color: #5b6475; margin-bottom: 16px; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
  .card { background: #fff; border-radius: 8px; padding: 10px 14px; box-shadow: 0 1px 2px #0001; min-width: 120px; }
  .card b { display: block; font-size: 22px; }
  table { border-collapse: collapse; background: #fff; border-radius: 8px; box-shadow: 0 1px 2px #0001; margin-bottom: 16px; width: 100%; }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #eceef2; font-size: 13px; vertical-align: top; }
  th { color: #5b6475; font-weight: 600; }
  .bars { display: flex; align-items: flex-end; gap: 2px; height: 40px; }
  .bar { background: #4f7cff; width: 14px; }
  .legend { color: #5b6475; font-size: 11px; }
  .meter { background: #eceef2; height: 8px; width: 120px; border-radius: 4px; overflow: hidden; }
  .meter div { background: #2fb37a; height: 8px; }
  .status-running { color: #2fb37a; } .status-failed { color: #d64545; }
</style>
</head>
<body>
<h1>Sheaf worker</h1>
<div class="sub">status <b id="status">connecting…</b> · updated <span id="updated">never</span> · window <span id="window"></span> s</div>
<div class="cards">
  <div class="card">succeeded<b id="succeeded">0</b></div>
  <div class="card">retried<b id="retried">0</b></div>
  <div class="card">dead-lettered<b id="dead">0</b></div>
  <div class="card">in flight<b id="inflight">0</b></div>
  <div class="card">running batches<b id="running">0</b></div>
  <div class="card">open aggregates<b id="open">0</b></div>
</div>
<table id="methods"><thead><tr>
  <th>service.method</th><th>tasks/s</th><th>batches</th><th>mean size</th><th>fill</th><th>sizes</th>
  <th>flush reasons</th><th>wait p50 / p99</th><th>retries</th><th>dead letters</th>
</tr></thead><tbody></tbody></table>
<table id="keys"><thead><tr><th>busiest batch keys (last 10 s)</th><th>service.method</th><th>tasks</th></tr></thead><tbody></tbody></table>
<p id="job-tracker"></p>
<table id="jobs"><thead><tr>
  <th>jobs (tracked by this worker)</th><th>name</th><th>state</th><th>progress</th><th>total</th><th>succeeded</th><th>failed</th><th>dead-lettered</th>
</tr></thead><tbody></tbody></table>
<script>
  const $ = (id) => document.getElementById(id);
  const cell = (row, content) => { const td = row.insertCell(); if (content instanceof Node) td.append(content); else td.textContent = String(content); return td; };
  function sizes(buckets) {
    const wrap = document.createElement('div'); wrap.className = 'bars';
    const max = Math.max(1, ...Object.values(buckets));
    for (const [label, count] of Object.entries(buckets)) {
      const bar = document.createElement('div'); bar.className = 'bar';
      bar.style.height = Math.max(2, Math.round((40 * count) / max)) + 'px';
      bar.title = label + ': ' + count;
      wrap.append(bar);
    }
    const box = document.createElement('div');
    const legend = document.createElement('div'); legend.className = 'legend';
    legend.textContent = Object.entries(buckets).map(([label, count]) => label + ': ' + count).join('  ');
    box.append(wrap, legend);
    return box;
  }
  function fill(ratio) {
    const meter = document.createElement('div'); meter.className = 'meter';
    const inner = document.createElement('div'); inner.style.width = Math.round(Math.min(1, ratio) * 100) + '%';
    meter.append(inner); meter.title = Math.round(ratio * 100) + '%';
    return meter;
  }
  function render(s) {
    $('status').textContent = s.status; $('status').className = 'status-' + s.status;
    $('updated').textContent = new Date(s.at).toLocaleTimeString();
    $('window').textContent = s.windowSeconds;
    $('succeeded').textContent = s.totals.succeeded; $('retried').textContent = s.totals.retried; $('dead').textContent = s.totals.deadLettered;
    const services = Object.values(s.services);
    $('inflight').textContent = services.reduce((n, x) => n + x.inFlight, 0);
    $('running').textContent = services.reduce((n, x) => n + x.runningExecutions, 0);
    $('open').textContent = services.reduce((n, x) => n + x.openAggregates, 0);
    const body = $('methods').tBodies[0]; body.replaceChildren();
    for (const m of s.methods) {
      const row = body.insertRow(); row.dataset.method = m.service + '.' + m.method;
      cell(row, m.service + '.' + m.method);
      cell(row, m.tasksPerSecond).className = 'rate';
      cell(row, m.batches); cell(row, m.meanBatchSize); cell(row, fill(m.fillRatio)); cell(row, sizes(m.sizeBuckets));
      cell(row, Object.entries(m.flushReasons).map(([r, n]) => r + ' ' + n).join(', '));
      cell(row, m.waitP50Ms + ' / ' + m.waitP99Ms + ' ms'); cell(row, m.retried); cell(row, m.deadLettered);
    }
    const keys = $('keys').tBodies[0]; keys.replaceChildren();
    for (const k of s.busiestKeys) { const row = keys.insertRow(); cell(row, k.batchKey); cell(row, k.service + '.' + k.method); cell(row, k.tasks); }
    const tracker = s.jobTracker;
    $('job-tracker').textContent = tracker === null ? 'job tracker: off on this worker'
      : tracker.phase === 'active' ? 'job tracker: active (epoch ' + tracker.epoch + ')'
      : tracker.phase === 'recovering' ? 'job tracker: taking over (epoch ' + tracker.epoch + '), reading the snapshots before its term'
      : 'job tracker: ' + tracker.phase + ' (the active one is another worker)';
    const jobs = $('jobs').tBodies[0]; jobs.replaceChildren();
    if (s.jobs.length === 0) cell(jobs.insertRow(), tracker && tracker.phase === 'active' ? 'none' : 'none here (another worker is the active job tracker)').colSpan = 8;
    for (const j of s.jobs) {
      const row = jobs.insertRow(); row.dataset.job = j.jobId;
      cell(row, j.jobId); cell(row, j.name ?? '');
      cell(row, j.stopped ? 'stopped' : j.finishedAt !== null ? 'finished' : j.sealed ? 'running' : 'open').className = 'state';
      const settled = j.succeeded + j.failed + j.deadLettered;
      const progress = document.createElement('div');
      progress.append(fill(j.total ? settled / j.total : 0));
      const label = document.createElement('span'); label.className = 'legend';
      label.textContent = j.percent === null ? settled + ' settled' : j.percent + '%';
      progress.append(label);
      cell(row, progress); cell(row, j.total ?? '-'); cell(row, j.succeeded); cell(row, j.failed); cell(row, j.deadLettered);
    }
  }
  new EventSource('dashboard/events').onmessage = (event) => render(JSON.parse(event.data));
</script>
</body>
</html>
`;
