// The page of serve.py: a photo goes to POST /api/predict; webcam frames go over the WebSocket /api/stream, one
// at a time (the next frame is grabbed when the reply for the previous one arrives, so the newest frame always
// wins and nothing queues). Boxes are drawn in the colour of predict.py's annotations.
"use strict";

const BOX = "rgb(0, 200, 0)";
const FRAME_WIDTH = 640; // webcam frames are scaled to at most this width before they are sent
const REPLY_TIMEOUT_MS = 3000; // a lost reply must not stall the stream

const $ = (id) => document.getElementById(id);

function drawFaces(ctx, faces, scale) {
  const lineWidth = Math.max(2, Math.round(ctx.canvas.width / 320));
  const fontSize = Math.max(12, Math.round(ctx.canvas.width / 40));
  ctx.lineWidth = lineWidth;
  ctx.font = `${fontSize}px sans-serif`;
  ctx.textBaseline = "bottom";
  for (const face of faces) {
    const [x, y, w, h] = face.box.map((v) => v * scale);
    ctx.strokeStyle = BOX;
    ctx.strokeRect(x, y, w, h);
    const text = `${face.emotion} ${face.confidence.toFixed(2)}`;
    const width = ctx.measureText(text).width + 8;
    const top = y > fontSize + 6 ? y - fontSize - 6 : y + h;
    ctx.fillStyle = BOX;
    ctx.fillRect(x - lineWidth / 2, top, width, fontSize + 6);
    ctx.fillStyle = "white";
    ctx.fillText(text, x + 4, top + fontSize + 3);
  }
}

function listFaces(list, faces) {
  list.replaceChildren();
  faces.forEach((face, i) => {
    const item = document.createElement("li");
    item.dataset.emotion = face.emotion;
    item.dataset.box = face.box.join(",");
    const name = face.track_id === undefined ? `Face ${i + 1}` : `Face #${face.track_id}`;
    const title = document.createElement("strong");
    title.textContent = `${name}: ${face.emotion} ${(100 * face.confidence).toFixed(0)} %`;
    item.append(title);
    for (const [label, p] of Object.entries(face.probabilities)) {
      const row = document.createElement("div");
      row.className = label === face.emotion ? "bar top" : "bar";
      row.innerHTML = '<span></span><span class="track"><span class="fill"></span></span><span></span>';
      row.children[0].textContent = label;
      row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
      row.children[2].textContent = p.toFixed(2);
      item.append(row);
    }
    list.append(item);
  });
}

function setStatus(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

// ------------------------------------------------------------------------------------------------ photo

async function predictPhoto(file) {
  const status = $("photo-status");
  setStatus(status, `${file.name}: finding faces…`);
  const form = new FormData();
  form.append("file", file, file.name);
  let faces;
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(`${response.status}: ${body.detail || response.statusText}`);
    faces = body;
  } catch (err) {
    setStatus(status, `${file.name}: ${err.message}`, true);
    return;
  }
  const image = new Image();
  image.src = URL.createObjectURL(file);
  await image.decode();
  const canvas = $("photo-canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  URL.revokeObjectURL(image.src);
  drawFaces(ctx, faces, 1);
  listFaces($("photo-faces"), faces);
  const count = faces.length === 1 ? "1 face" : `${faces.length} faces`;
  setStatus(status, faces.length ? `${file.name}: ${count}` : `${file.name}: no face found`);
}

const dropZone = $("drop-zone");
$("photo-input").addEventListener("change", (event) => {
  if (event.target.files.length) predictPhoto(event.target.files[0]);
});
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("over");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("over");
  if (event.dataTransfer.files.length) predictPhoto(event.dataTransfer.files[0]);
});

// ----------------------------------------------------------------------------------------------- webcam

const webcam = { stream: null, socket: null, waitingSince: 0, lastReply: 0, fps: 0, grab: null };

function sendFrame() {
  const video = $("video");
  if (!webcam.socket || webcam.socket.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  if (webcam.waitingSince && performance.now() - webcam.waitingSince < REPLY_TIMEOUT_MS) return;
  const scale = Math.min(1, FRAME_WIDTH / video.videoWidth);
  const grab = webcam.grab;
  grab.width = Math.round(video.videoWidth * scale);
  grab.height = Math.round(video.videoHeight * scale);
  grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
  webcam.waitingSince = performance.now();
  grab.toBlob((blob) => {
    if (blob && webcam.socket && webcam.socket.readyState === WebSocket.OPEN) webcam.socket.send(blob);
  }, "image/jpeg", 0.85);
}

function showReply(message) {
  const video = $("video");
  const overlay = $("overlay");
  overlay.width = video.videoWidth;
  overlay.height = video.videoHeight;
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (message.error) {
    setStatus($("webcam-status"), message.error, true);
    return;
  }
  drawFaces(ctx, message.faces, overlay.width / message.width);
  listFaces($("live-faces"), message.faces);
  const now = performance.now();
  if (webcam.lastReply) {
    const instant = 1000 / Math.max(1, now - webcam.lastReply);
    webcam.fps = webcam.fps ? 0.9 * webcam.fps + 0.1 * instant : instant;
    $("fps").textContent = `${webcam.fps.toFixed(1)} fps (server ${message.ms} ms/frame)`;
  }
  webcam.lastReply = now;
}

async function startWebcam() {
  const status = $("webcam-status");
  if (!navigator.mediaDevices) {
    // Browsers offer cameras to secure pages only: https://, or http://localhost and http://127.0.0.1.
    setStatus(status, "this browser gives the webcam only to https:// or localhost pages: open the app that way", true);
    return;
  }
  try {
    webcam.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    setStatus(status, `cannot open the webcam: ${err.message}`, true);
    return;
  }
  const video = $("video");
  video.srcObject = webcam.stream;
  await video.play();
  webcam.grab = document.createElement("canvas");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/stream`);
  webcam.socket = socket;
  socket.onopen = () => {
    setStatus(status, "streaming");
    sendFrame();
  };
  socket.onmessage = (event) => {
    webcam.waitingSince = 0;
    showReply(JSON.parse(event.data));
    requestAnimationFrame(sendFrame);
  };
  socket.onclose = (event) => {
    if (webcam.socket === socket) {
      setStatus(status, `stream closed${event.reason ? ": " + event.reason : ""}`, event.code !== 1000);
      stopWebcam(false);
    }
  };
  // A reply lost to a hiccup must not stop the stream: retry once the timeout has passed.
  webcam.timer = setInterval(sendFrame, REPLY_TIMEOUT_MS);
  $("webcam-button").textContent = "Stop webcam";
}

function stopWebcam(closeSocket = true) {
  clearInterval(webcam.timer);
  if (webcam.stream) webcam.stream.getTracks().forEach((track) => track.stop());
  const socket = webcam.socket;
  Object.assign(webcam, { stream: null, socket: null, waitingSince: 0, lastReply: 0, fps: 0 });
  if (closeSocket && socket) socket.close(1000);
  $("video").srcObject = null;
  const overlay = $("overlay");
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  $("fps").textContent = "";
  $("webcam-button").textContent = "Use webcam";
}

$("webcam-button").addEventListener("click", () => (webcam.stream ? stopWebcam() : startWebcam()));

// ------------------------------------------------------------------------------------------------ health

fetch("/api/health")
  .then((response) => response.json())
  .then((health) => {
    $("model-info").textContent = `model ${health.model} · detector ${health.detector} · ${health.classes.join(", ")}`;
  })
  .catch(() => setStatus($("model-info"), "the server does not answer", true));
