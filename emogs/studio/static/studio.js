// emogs studio page: plays the speech, asks the server for the frame of the playback clock, sends controls.
// Sync: the <audio> element is the clock. One frame request is in flight at a time; each asks for the frame
// at (audio time + the measured request-to-display time), so the frame shown matches the audio it is shown
// with. Everything measured here is exposed on window.studio for the tests and shown in the stats line.
"use strict";

const FPS = 25;
const $ = (id) => document.getElementById(id);
const S = {
  ws: null, session: null, info: null, speech: null, connected: false,
  controls: { au: {}, emotion: "", intensity: 0.7, blinks: true, pose: "training", base: "default",
              clamp: true, speech_aus: true },
  cv: 0, serverV: 0, dirty: false, pendingLatency: [],
  seq: 0, inflight: null, lead: 0.05, segment: 0, playing: false,
  last: { frame: -1, v: -1, speech: -1 }, lastHeader: null,
  framesReceived: 0, frameTimes: [], latencies: [], drifts: [], measured: new Map(), requested: new Map(),
  exporting: false, exportUrl: null, exportFrames: 0, ended: 0, errors: [], messages: [],
  recorder: null, speechVersion: -1, uploadsDone: 0,
};
window.studio = S;

function show(text, kind) {
  const m = $("message");
  m.textContent = text;
  m.className = kind || "";
  S.messages.push({ text, kind: kind || "" });
  if (kind === "error") S.errors.push(text);
}

function send(obj) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(obj));
}

// ---------- page set-up from /api/info ----------
function buildControls(info) {
  $("run").textContent = `run: ${info.run} · ${info.device} · ${info.size} px`;
  $("device-note").textContent = info.device === "cuda" ? "" : info.note;
  const cv = $("frame");
  cv.width = info.size; cv.height = info.size;
  const emo = $("emotion");
  emo.length = 1;
  for (const e of info.emotions) {
    const o = document.createElement("option");
    o.value = e.name; o.textContent = `${e.name} (FACS ${e.facs})`;
    emo.appendChild(o);
  }
  const body = $("aus").tBodies[0];
  body.textContent = "";
  const plotSel = $("plot-au");
  plotSel.length = 0;
  info.aus.forEach((a, k) => {
    const tr = document.createElement("tr");
    tr.dataset.au = a.name;
    const lo = Math.max(0, a.min - info.clamp_margin), hi = Math.min(1, a.max + info.clamp_margin);
    const pct = (x) => `${(100 * x).toFixed(1)}%`;
    const grad = `linear-gradient(to right, #ddd 0 ${pct(lo)}, #cfe8cf ${pct(lo)} ${pct(a.min)}, ` +
      `#7cc47c ${pct(a.min)} ${pct(a.max)}, #cfe8cf ${pct(a.max)} ${pct(hi)}, #ddd ${pct(hi)} 100%)`;
    tr.innerHTML = `<td><input type="checkbox" class="pin" aria-label="set ${a.name}"></td>` +
      `<td class="name mono"></td><td class="facs"></td>` +
      `<td class="range"><input type="range" class="au free" min="0" max="1" step="0.01"></td>` +
      `<td class="val mono"></td>`;
    tr.querySelector(".name").textContent = a.name + (a.speech ? "*" : "");
    tr.querySelector(".facs").textContent = a.facs;
    const sl = tr.querySelector("input.au");
    sl.style.background = grad;
    sl.value = a.default;
    sl.title = `${a.name} ${a.facs}: the training clip shows ${a.min.toFixed(2)}-${a.max.toFixed(2)}` +
      (a.speech ? "; follows the speech when not set" : "");
    sl.id = `au-${a.name}`;
    tr.querySelector(".val").textContent = Number(a.default).toFixed(2);
    const pin = tr.querySelector(".pin");
    sl.addEventListener("input", () => {
      pin.checked = true;
      sl.classList.remove("free");
      S.controls.au[a.name] = Number(sl.value);
      tr.querySelector(".val").textContent = Number(sl.value).toFixed(2);
      changed();
    });
    pin.addEventListener("change", () => {
      if (pin.checked) { S.controls.au[a.name] = Number(sl.value); sl.classList.remove("free"); }
      else { delete S.controls.au[a.name]; sl.classList.add("free"); }
      changed();
    });
    body.appendChild(tr);
    const o = document.createElement("option");
    o.value = String(k); o.textContent = `${a.name} ${a.facs}`;
    plotSel.appendChild(o);
  });
  plotSel.value = String(info.aus.findIndex((a) => a.name === "AU12"));
}

function applyControlsToPage(c) {
  S.controls = JSON.parse(JSON.stringify(c));
  $("emotion").value = c.emotion || "";
  $("intensity").value = c.intensity; $("intensity-val").textContent = Number(c.intensity).toFixed(2);
  $("pose").value = c.pose; $("base").value = c.base;
  $("blinks").checked = c.blinks; $("clamp").checked = c.clamp; $("speech-aus").checked = c.speech_aus;
  for (const tr of $("aus").tBodies[0].rows) {
    const name = tr.dataset.au, sl = tr.querySelector("input.au"), pin = tr.querySelector(".pin");
    const set = Object.prototype.hasOwnProperty.call(c.au, name);
    pin.checked = set;
    sl.classList.toggle("free", !set);
    if (set) { sl.value = c.au[name]; tr.querySelector(".val").textContent = Number(c.au[name]).toFixed(2); }
  }
}

function changed() {
  S.cv += 1;
  S.dirty = true;
  S.pendingLatency.push({ v: S.cv, t: performance.now() });
}

function wireControls() {
  $("emotion").addEventListener("change", (e) => { S.controls.emotion = e.target.value; changed(); });
  $("intensity").addEventListener("input", (e) => {
    S.controls.intensity = Number(e.target.value);
    $("intensity-val").textContent = S.controls.intensity.toFixed(2);
    changed();
  });
  $("pose").addEventListener("change", (e) => { S.controls.pose = e.target.value; changed(); });
  $("base").addEventListener("change", (e) => { S.controls.base = e.target.value; changed(); });
  $("blinks").addEventListener("change", (e) => { S.controls.blinks = e.target.checked; changed(); });
  $("clamp").addEventListener("change", (e) => { S.controls.clamp = e.target.checked; changed(); });
  $("speech-aus").addEventListener("change", (e) => { S.controls.speech_aus = e.target.checked; changed(); });
  $("free-all").addEventListener("click", () => {
    S.controls.au = {};
    for (const tr of $("aus").tBodies[0].rows) {
      tr.querySelector(".pin").checked = false;
      tr.querySelector("input.au").classList.add("free");
    }
    changed();
  });
  $("all-aus").addEventListener("change", (e) => {
    const q = e.target.checked ? "?all=1" : "?all=0";
    $("dl-csv").href = "/api/timeline.csv" + q;
    $("dl-json").href = "/api/timeline.json" + q;
  });
  $("measure").addEventListener("change", (e) => send({ type: "measure", on: e.target.checked }));
  $("plot-au").addEventListener("change", drawPlot);
}

// ---------- audio transport ----------
const audio = $("audio");

async function loadAudio(speech) {
  S.speech = speech;
  S.speechVersion = speech.version;
  S.requested.clear(); S.measured.clear();
  const r = await fetch(`/api/audio?v=${speech.version}`, { cache: "no-store" });
  const blob = await r.blob();
  const old = audio.src;
  audio.src = URL.createObjectURL(blob);
  if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
  audio.load();
  $("seek").max = speech.duration;
  $("seek").value = 0;
  $("speech-name").textContent = speech.name ? `${speech.name} (${speech.duration.toFixed(2)} s)`
    : `no speech loaded: ${speech.duration.toFixed(0)} s of silence (idle head)`;
  $("play").disabled = false;
  S.last.frame = -1;
}

function playbackPosition(playing) {
  send({ type: "position", t_audio: audio.currentTime || 0, playing, segment: S.segment });
}

function wireTransport() {
  $("play").addEventListener("click", () => {
    if (audio.paused) audio.play().catch((e) => show(`cannot play: ${e.message}`, "error"));
    else audio.pause();
  });
  audio.addEventListener("play", () => { S.segment += 1; S.playing = true; $("play").textContent = "Pause"; });
  audio.addEventListener("pause", () => {
    playbackPosition(true);
    S.playing = false; $("play").textContent = "Play";
  });
  audio.addEventListener("ended", () => {
    playbackPosition(true);
    S.playing = false; S.ended += 1; $("play").textContent = "Play";
  });
  audio.addEventListener("seeking", () => {
    S.segment += 1;
    const f = Math.floor((audio.currentTime || 0) * FPS);  // the plot keeps what was played up to here
    for (const m of [S.requested, S.measured]) for (const k of [...m.keys()]) if (k > f) m.delete(k);
  });
  $("seek").addEventListener("input", (e) => { audio.currentTime = Number(e.target.value); });
}

// ---------- uploads and the microphone ----------
async function upload(blob, name) {
  try { return await uploadOnce(blob, name); } finally { S.uploadsDone += 1; }
}

async function uploadOnce(blob, name) {
  const lim = S.info.limits;
  if (blob.size > lim.upload_mb * 1e6) {
    show(`${name}: larger than the upload limit of ${lim.upload_mb} MB`, "error");
    return false;
  }
  show(`uploading ${name} ...`);
  audio.pause();
  let r, body;
  try {
    r = await fetch("/api/upload", { method: "POST", body: blob,
      headers: { "X-Studio-Session": S.session || "", "X-Filename": encodeURIComponent(name) } });
    body = await r.json();
  } catch (e) {
    show(`upload failed: ${e.message}`, "error");
    return false;
  }
  if (!r.ok) { show(body.error || `upload failed (HTTP ${r.status})`, "error"); return false; }
  await loadAudio(body.speech);
  show(`loaded ${body.speech.name}: ${body.speech.duration.toFixed(2)} s` +
       (body.speech.silent ? " (the audio is silent: an idle head)" : ""), "ok");
  return true;
}

function wireUploads() {
  $("file").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    if (f) await upload(f, f.name);
    e.target.value = "";
  });
  $("record").addEventListener("click", async () => {
    if (S.recorder) { S.recorder.stop(); return; }
    if (!navigator.mediaDevices || !window.MediaRecorder) { show("this browser cannot record audio", "error"); return; }
    let stream;
    try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); }
    catch (e) { show(`microphone: ${e.message}`, "error"); return; }
    const chunks = [];
    const rec = new MediaRecorder(stream);
    rec.ondataavailable = (ev) => { if (ev.data.size) chunks.push(ev.data); };
    rec.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      S.recorder = null;
      $("record").textContent = "Record microphone"; $("record").classList.remove("on");
      await upload(new Blob(chunks, { type: rec.mimeType || "audio/webm" }), "microphone.webm");
    };
    rec.start(250);
    S.recorder = rec;
    $("record").textContent = "Stop recording"; $("record").classList.add("on");
    show("recording from the microphone ... press Stop recording to use it");
  });
}

// ---------- export ----------
function wireExport() {
  $("export-mp4").addEventListener("click", () => {
    if (S.exporting) return;
    audio.pause();
    S.exporting = true;
    S.exportUrl = null;
    $("export-status").textContent = "rendering the take ...";
    send({ type: "export" });
  });
}

// ---------- the socket ----------
function connect(takeOver) {
  if (S.ws) { try { S.ws.close(); } catch (e) { /* closed already */ } }
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  S.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: "hello", take_over: !!takeOver }));
  ws.onclose = () => {
    if (S.ws !== ws) return;
    if (S.connected) show("lost the connection to the studio server (stopped?): reload the page", "error");
    S.connected = false; S.inflight = null;
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") onJson(JSON.parse(ev.data));
    else onFrame(ev.data);
  };
}

function onJson(m) {
  switch (m.type) {
    case "welcome":
      S.session = m.session; S.connected = true; S.info = m.info;
      $("busy").hidden = true;
      buildControls(m.info);
      applyControlsToPage(m.controls);
      S.dirty = true;  // the page's controls are the truth from here on
      loadAudio(m.speech);
      break;
    case "busy":
    case "taken_over":
      S.connected = false;
      audio.pause();
      $("busy-text").textContent = m.type === "busy" ? `${m.message}. This tab can take it over (the other tab then stops).`
        : `${m.message}. You can take it back.`;
      $("busy").hidden = false;
      break;
    case "speech":
      if (m.speech.version !== S.speechVersion) loadAudio(m.speech);
      break;
    case "controls_ok":
      S.serverV = m.v;
      break;
    case "measured":
      S.measured.set(m.frame, m.au);
      break;
    case "skipped":
      S.inflight = null;
      break;
    case "export_progress":
      S.exporting = m.done < m.total;
      $("export-progress").hidden = false;
      $("export-progress").value = m.total ? m.done / m.total : 0;
      $("export-status").textContent = `rendering the take: ${m.done} / ${m.total} frames`;
      break;
    case "export_ready": {
      S.exporting = false;
      S.exportUrl = m.url; S.exportFrames = m.frames;
      $("export-progress").hidden = true;
      const st = $("export-status");
      st.textContent = `${m.frames} frames in ${m.seconds} s: `;
      const a = document.createElement("a");
      a.href = m.url; a.download = "studio_take.mp4"; a.textContent = "download studio_take.mp4"; a.id = "dl-mp4";
      st.appendChild(a);
      break;
    }
    case "error":
      S.exporting = S.exporting && !m.message.startsWith("export failed");
      show(m.message, "error");
      break;
    default:
      break;
  }
}

async function onFrame(buf) {
  const dv = new DataView(buf);
  const n = dv.getUint32(0);
  const hdr = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const req = S.inflight;
  try {
    const bmp = await createImageBitmap(new Blob([new Uint8Array(buf, 4 + n)], { type: "image/jpeg" }));
    $("frame").getContext("2d").drawImage(bmp, 0, 0, $("frame").width, $("frame").height);
    bmp.close();
  } catch (e) {
    show(`could not show a frame: ${e.message}`, "error");
  }
  const now = performance.now();
  if (req && req.seq === hdr.seq) {
    S.lead = 0.8 * S.lead + 0.2 * Math.min(2, (now - req.sent) / 1000);
    S.inflight = null;
  }
  S.framesReceived += 1;
  S.lastHeader = hdr;
  S.last = { frame: hdr.frame, v: hdr.v, speech: hdr.speech };
  S.frameTimes.push(now);
  if (S.frameTimes.length > 50) S.frameTimes.shift();
  while (S.pendingLatency.length && S.pendingLatency[0].v <= hdr.v) {
    const p = S.pendingLatency.shift();
    if (!S.pendingLatency.length || S.pendingLatency[0].v > hdr.v) S.latencies.push({ ms: now - p.t, v: p.v });
  }
  if (S.playing && !audio.paused) {
    S.drifts.push(((hdr.frame + 0.5) / FPS - audio.currentTime) * 1000);
    if (S.drifts.length > 2000) S.drifts.shift();
  }
  S.requested.set(hdr.frame, hdr.au);
  updateFreeSliders(hdr.au);
  drawPlot();
}

function updateFreeSliders(au) {
  const rows = $("aus").tBodies[0].rows;
  for (let k = 0; k < rows.length; k++) {
    const tr = rows[k], name = tr.dataset.au;
    if (!Object.prototype.hasOwnProperty.call(S.controls.au, name)) {
      tr.querySelector("input.au").value = au[k];
      tr.querySelector(".val").textContent = au[k].toFixed(2);
      tr.classList.remove("clamped");
    } else {  // a set AU the model is driven with at another value: cut by the clamp
      const cut = Math.abs(au[k] - S.controls.au[name]) > 0.02;
      tr.classList.toggle("clamped", cut);
      const val = tr.querySelector(".val");
      val.textContent = (cut ? au[k] : S.controls.au[name]).toFixed(2);
      val.title = cut ? `set ${S.controls.au[name].toFixed(2)}, clamped to ${au[k].toFixed(2)} (the training range + 0.1)` : "";
    }
  }
}

// ---------- the loop ----------
function frameAt(t) { return Math.max(0, Math.min((S.speech ? S.speech.frames : 1) - 1, Math.floor(t * FPS + 1e-6))); }

function tick() {
  requestAnimationFrame(tick);
  if (!S.connected || !S.speech) return;
  const playing = !audio.paused && !audio.ended;
  const tA = audio.currentTime || 0;
  if (document.activeElement !== $("seek")) $("seek").value = tA;
  $("time").textContent = `${tA.toFixed(2)} / ${S.speech.duration.toFixed(2)} s`;
  if (S.dirty) {
    S.dirty = false;
    send({ type: "controls", v: S.cv, controls: S.controls, t_audio: tA, playing, segment: S.segment });
  }
  if (S.inflight || S.exporting) {
    if (S.inflight && performance.now() - S.inflight.sent > 15000) S.inflight = null;  // lost: ask again
    return;
  }
  const t = playing ? Math.min(S.speech.duration, tA + S.lead) : tA;
  const f = frameAt(t);
  if (f === S.last.frame && S.cv === S.last.v && S.speechVersion === S.last.speech) return;
  S.seq += 1;
  S.inflight = { seq: S.seq, sent: performance.now(), frame: f };
  send({ type: "frame", seq: S.seq, t, t_audio: tA, playing, segment: S.segment });
  if (S.framesReceived % 10 === 0) updateStats();
}

function median(xs) { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : NaN; }

function updateStats() {
  const ft = S.frameTimes;
  const fps = ft.length > 1 ? (1000 * (ft.length - 1)) / (ft[ft.length - 1] - ft[0]) : 0;
  const lat = S.latencies.slice(-20).map((x) => x.ms);
  const d = S.drifts.slice(-200);
  const absd = d.map(Math.abs);
  const h = S.lastHeader || {};
  $("stats").textContent = `${fps.toFixed(1)} frames/s · render ${h.render_ms ?? "-"} ms · ` +
    `slider→frame ${lat.length ? median(lat).toFixed(0) + " ms (median of " + lat.length + ")" : "-"} · ` +
    `A/V offset ${d.length ? "mean " + (d.reduce((a, b) => a + b, 0) / d.length).toFixed(0) +
      " ms, median |.| " + median(absd).toFixed(0) + " ms" : "- (play to measure)"}`;
}
setInterval(updateStats, 500);

// ---------- the AU plot ----------
function drawPlot() {
  const cv = $("plot"), g = cv.getContext("2d");
  const W = cv.width, H = cv.height, pad = 22;
  g.clearRect(0, 0, W, H);
  if (!S.info) return;
  const k = Number($("plot-au").value);
  const a = S.info.aus[k];
  const tNow = audio.currentTime || 0, t0 = Math.max(0, tNow - 8), t1 = t0 + 10;
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (W - pad - 4), y = (v) => H - pad - v * (H - pad - 6);
  g.fillStyle = "#e6f4e6";
  g.fillRect(pad, y(a.max), W - pad - 4, y(a.min) - y(a.max));
  g.strokeStyle = "#bbb"; g.beginPath(); g.moveTo(pad, y(0)); g.lineTo(W - 4, y(0)); g.moveTo(pad, y(1));
  g.lineTo(W - 4, y(1)); g.stroke();
  g.fillStyle = "#666"; g.font = "10px sans-serif";
  g.fillText("1", 6, y(1) + 4); g.fillText("0", 6, y(0) + 4);
  g.fillText(`${t0.toFixed(0)} s`, pad, H - 6); g.fillText(`${a.name} ${a.facs}`, pad + 40, 12);
  const keys = [...S.requested.keys()].filter((f) => f / FPS >= t0 && f / FPS <= t1).sort((p, q) => p - q);
  g.strokeStyle = "#2b6cb0"; g.lineWidth = 2; g.beginPath();
  keys.forEach((f, i) => { const v = S.requested.get(f)[k]; if (i) g.lineTo(x(f / FPS), y(v)); else g.moveTo(x(f / FPS), y(v)); });
  g.stroke(); g.lineWidth = 1;
  g.fillStyle = "#d0672a";
  for (const [f, au] of S.measured) {
    if (!au || f / FPS < t0 || f / FPS > t1) continue;
    g.beginPath(); g.arc(x(f / FPS), y(au[k]), 2.5, 0, 2 * Math.PI); g.fill();
  }
  g.strokeStyle = "#c33"; g.beginPath(); g.moveTo(x(tNow), 4); g.lineTo(x(tNow), H - pad); g.stroke();
}

// ---------- start ----------
wireControls();
wireTransport();
wireUploads();
wireExport();
$("take-over").addEventListener("click", () => connect(true));
connect(false);
requestAnimationFrame(tick);
