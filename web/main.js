// The demo page: loads the wasm package (web/pkg, built by tools/web_build.sh) and the demo model
// (fetched from assets/demo-model when the repository root is served), then segments the demo image
// or the one the user picks or drops.
import init, { WebSegmenter } from "./pkg/mask2former_web.js";

const MODEL = new URL("../assets/demo-model/", import.meta.url);
const DEMO_IMAGE = new URL("../assets/demo.png", import.meta.url);
const $ = (id) => document.getElementById(id);
const lines = [];

function status(text, error = false) {
  lines.push(text);
  $("status").textContent = lines.join("\n");
  $("status").className = error ? "error" : "";
}

async function fetchFile(name, { optional = false, binary = false } = {}) {
  const response = await fetch(new URL(name, MODEL));
  if (!response.ok) {
    if (optional && response.status === 404) return null;
    throw new Error(`${name}: HTTP ${response.status}`);
  }
  return binary ? new Uint8Array(await response.arrayBuffer()) : response.text();
}

function show(result) {
  const canvas = $("canvas");
  canvas.width = result.width;
  canvas.height = result.height;
  const pixels = new Uint8ClampedArray(result.overlay_rgba());
  canvas.getContext("2d").putImageData(new ImageData(pixels, result.width, result.height), 0, 0);
  const segments = JSON.parse(result.segments_json());
  const rows = segments.map((s) =>
    `<tr><td>${s.id}</td><td>${s.label_name}</td><td>${s.is_thing ? "thing" : "stuff"}</td>` +
    `<td class="num">${s.score.toFixed(3)}</td><td class="num">${s.area}</td>` +
    `<td class="num">${s.bbox.join(", ")}</td></tr>`);
  $("segments").innerHTML =
    "<tr><th>id</th><th>label</th><th>kind</th><th>score</th><th>area (px)</th><th>box x, y, w, h</th></tr>" +
    rows.join("");
  document.body.dataset.segments = String(segments.length);
}

async function main() {
  if (!navigator.gpu) {
    status("This browser has no WebGPU. Chrome and Edge have it on by default (version 113 and later); " +
      "Firefox from version 141 on Windows, Safari from 26; elsewhere enable it in the browser's flags.", true);
    return;
  }
  await init();
  let t0 = performance.now();
  const [config, weights, categories, preprocessor] = await Promise.all([
    fetchFile("config.json"),
    fetchFile("model.safetensors", { binary: true }),
    fetchFile("categories.json", { optional: true }),
    fetchFile("preprocessor_config.json", { optional: true }),
  ]);
  const seg = await WebSegmenter.load(config, weights, categories, preprocessor);
  status(`adapter: ${seg.adapter}`);
  status(`model: ${(weights.length / 1e6).toFixed(1)} MB fetched and loaded in ${(performance.now() - t0).toFixed(0)} ms`);

  let busy = false;
  async function run(bytes, name) {
    if (busy) return;
    busy = true;
    try {
      const result = await seg.segment(bytes, name, $("task").value);
      show(result);
      status(`${name}: ${result.width}x${result.height}, ${$("task").value}, ` +
        `${result.millis.toFixed(0)} ms (network and post-processing)`);
    } catch (e) {
      status(`${name}: ${e.message ?? e}`, true);
    } finally {
      busy = false;
    }
  }
  const pick = async (file) => run(new Uint8Array(await file.arrayBuffer()), file.name);
  $("file").addEventListener("change", (e) => e.target.files[0] && pick(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) pick(e.dataTransfer.files[0]);
  });

  const demo = new Uint8Array(await (await fetch(DEMO_IMAGE)).arrayBuffer());
  await run(demo, "demo.png");
  document.body.dataset.ready = "1";
}

main().catch((e) => status(String(e.message ?? e), true));
