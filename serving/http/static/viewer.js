// cnn-explain viewer: plain JavaScript, no build step, no external resources (works offline).
// Reads GET /v1/models (methods and their param_schema) and GET /v1/scenes, sends POST /v1/explain
// (the typed API in protobuf's JSON mapping) once per chosen method, and draws each heat map over
// the image, coloured by the model's explanation metadata `visualization` when it has one
// (visualization.js, loaded first).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], model: null, imageB64: null, results: {} };

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function api(path, body) {
  const init = body === undefined ? { headers: headers() } : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// A tensorflow.TensorProto in protobuf's JSON mapping (tensor_content: little-endian bytes).
function decodeTensor(t) {
  const dims = ((t.tensor_shape || {}).dim || []).map((d) => Number(d.size || 0));
  const raw = Uint8Array.from(atob(t.tensor_content || ""), (c) => c.charCodeAt(0));
  const types = { DT_FLOAT: Float32Array, DT_INT32: Int32Array, DT_BOOL: Uint8Array, DT_UINT8: Uint8Array };
  const Type = types[t.dtype] || Float32Array;
  return { dims, data: new Type(raw.buffer, raw.byteOffset, raw.byteLength / Type.BYTES_PER_ELEMENT) };
}

// --------------------------------------------------------------------------- models, methods, params
async function loadModels() {
  try {
    state.models = (await api("/v1/models")).models || [];
  } catch (err) {
    setStatus("cannot list the models: " + err.message, true);
    return;
  }
  const select = $("model");
  select.innerHTML = "";
  for (const m of state.models) select.add(new Option(`${m.name} (v${m.version}, ${m.kind})`, m.name));
  const firstClassifier = state.models.find((m) => m.kind === "classifier");
  if (firstClassifier) select.value = firstClassifier.name;
  await chooseModel();
}

async function chooseModel() {
  state.model = state.models.find((m) => m.name === $("model").value) || null;
  const box = $("methods");
  box.querySelectorAll("label").forEach((el) => el.remove());
  $("params").innerHTML = "";
  if (!state.model) return;
  for (const m of state.model.methods || []) {
    const label = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.value = m.name;
    check.id = "method-" + m.name;
    check.checked = m.name === "gradcam";
    check.addEventListener("change", renderParams);
    label.append(check, " " + m.name);
    label.title = m.description || "";
    box.append(label);
  }
  renderParams();
  await loadScenes();
}

function chosenMethods() {
  return [...document.querySelectorAll("#methods input:checked")].map((el) => el.value);
}

// Form fields from each chosen method's declared schema (param_schema of GET /v1/models).
function renderParams() {
  const box = $("params");
  box.innerHTML = "";
  for (const name of chosenMethods()) {
    const method = state.model.methods.find((m) => m.name === name);
    const props = ((method || {}).param_schema || {}).properties || {};
    if (!Object.keys(props).length) continue;
    const fs = document.createElement("fieldset");
    fs.innerHTML = `<legend>${name} parameters</legend>`;
    for (const [key, prop] of Object.entries(props)) {
      const label = document.createElement("label");
      const type = Array.isArray(prop.type) ? prop.type[0] : prop.type || "";
      const input = document.createElement(prop.enum ? "select" : "input");
      input.dataset.method = name;
      input.dataset.param = key;
      input.dataset.type = type;
      if (prop.enum) {
        for (const choice of prop.enum) input.add(new Option(choice, choice, false, choice === prop.default));
      } else if (type === "boolean") {
        input.type = "checkbox";
        input.checked = !!prop.default;
      } else {
        input.type = type === "integer" || type === "number" ? "number" : "text";
        if (type === "number") input.step = "any";
        const min = prop.minimum !== undefined ? prop.minimum : prop.exclusiveMinimum;
        const max = prop.maximum !== undefined ? prop.maximum : prop.exclusiveMaximum;
        if (min !== undefined) input.min = min;
        if (max !== undefined) input.max = max;
        input.value = prop.default === undefined || prop.default === null ? "" : prop.default;
      }
      input.disabled = !!prop.readOnly;
      input.title = prop.description || "";
      label.append(key, input);
      fs.append(label);
    }
    box.append(fs);
  }
}

function paramsOf(method) {
  const out = {};
  for (const input of document.querySelectorAll(`#params [data-method="${method}"]`)) {
    if (input.disabled) continue;
    const type = input.dataset.type;
    if (type === "boolean") out[input.dataset.param] = { bool_value: input.checked };
    else if (input.value === "") continue;
    else if (type === "integer") out[input.dataset.param] = { int_value: String(parseInt(input.value, 10)) };
    else if (type === "number") out[input.dataset.param] = { float_value: Number(input.value) };
    else if (type === "" && !isNaN(Number(input.value))) out[input.dataset.param] = { float_value: Number(input.value) };
    else out[input.dataset.param] = { string_value: input.value };
  }
  return out;
}

// --------------------------------------------------------------------------- the image
async function loadScenes() {
  const select = $("scene");
  select.length = 1;
  if (!state.model) return;
  const model = state.model.name;
  delete select.dataset.model;
  try {
    const { scenes } = await api("/v1/scenes?size=" + state.model.input_size[0]);
    if (!state.model || state.model.name !== model) return; // another model was chosen meanwhile
    select.length = 1;
    for (const s of scenes) {
      const option = new Option(`${s.id} (${s.label})`, s.id);
      option.dataset.png = s.png_b64;
      select.add(option);
    }
    select.dataset.model = model;
  } catch (err) {
    setStatus("cannot load the scenes: " + err.message, true);
  }
}

function setImage(b64, mime) {
  state.imageB64 = b64;
  $("preview").src = `data:${mime};base64,${b64}`;
}

function chooseScene() {
  const option = $("scene").selectedOptions[0];
  if (option && option.dataset.png) setImage(option.dataset.png, "image/png");
}

function chooseUpload() {
  const file = $("upload").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    const [head, b64] = String(reader.result).split(",");
    setImage(b64, head.slice(5, head.indexOf(";")));
    $("scene").value = "";
  };
  reader.readAsDataURL(file);
}

// --------------------------------------------------------------------------- drawing
// The map the visualization settings apply to: signed attributions summed over colour when the
// method returns them (Integrated Gradients, XRAI), else the heat map.
function signedMap(response, h, w) {
  const attr = (response.outputs || {}).attributions;
  if (!attr) return null;
  const t = decodeTensor(attr);
  if (t.dims.length === 3 && t.dims[1] === h && t.dims[2] === w) return t.data.slice(0, h * w);
  if (t.dims.length !== 4 || t.dims[1] !== h || t.dims[2] !== w) return null;
  const c = t.dims[3];
  const out = new Float32Array(h * w);
  for (let i = 0; i < h * w; i++) for (let k = 0; k < c; k++) out[i] += t.data[i * c + k];
  return out;
}

// The heat map as a canvas, coloured by the model's visualization settings (visualization.js).
function heatCanvas(heat, h, w, vis) {
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  img.data.set(applyVisualization(heat, vis));
  ctx.putImageData(img, 0, 0);
  return canvas;
}

function draw(method) {
  const res = state.results[method];
  if (!res) return;
  const ctx = res.canvas.getContext("2d");
  ctx.globalAlpha = 1;
  ctx.drawImage(res.image, 0, 0, res.w, res.h);
  ctx.globalAlpha = Number($("opacity").value);
  ctx.drawImage(res.heat, 0, 0);
  ctx.globalAlpha = 1;
}

// .npy version 1.0: magic, header length, a Python dict literal padded to 64 bytes, the data.
function npyBlob(values, shape) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const pre = new Uint8Array(10 + header.length);
  pre.set([0x93, 78, 85, 77, 80, 89, 1, 0, header.length & 255, header.length >> 8]);
  for (let i = 0; i < header.length; i++) pre[10 + i] = header.charCodeAt(i);
  return new Blob([pre, new Float32Array(values).buffer], { type: "application/octet-stream" });
}

function topClasses(probs, names, k) {
  return [...probs].map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, k)
    .map(([p, i]) => ({ name: names[i] || `class ${i}`, p }));
}

async function showResult(method, response, image) {
  const heat = decodeTensor(response.heatmap);
  const [, h, w] = heat.dims;
  const first = heat.data.slice(0, h * w);
  const box = document.createElement("div");
  box.className = "result";
  box.id = "result-" + method;
  const canvas = document.createElement("canvas");
  canvas.id = "overlay-" + method;
  canvas.width = w;
  canvas.height = h;
  box.innerHTML = `<h2>${method}</h2>`;
  box.append(canvas);
  const vis = state.model.visualization || {};
  const shown = (Object.keys(vis).length && signedMap(response, h, w)) || first;
  state.results[method] = { canvas, image, heat: heatCanvas(shown, h, w, vis), h, w };
  draw(method);
  if (response.probabilities) {
    const probs = decodeTensor(response.probabilities);
    const cls = decodeTensor(response.class_index).data[0];
    const list = document.createElement("ol");
    for (const c of topClasses(probs.data.slice(0, probs.dims[1]), state.model.class_names || [], 3)) {
      const li = document.createElement("li");
      li.textContent = `${c.name}: ${(100 * c.p).toFixed(1)} %`;
      list.append(li);
    }
    box.append(`explained class: ${(state.model.class_names || [])[cls] || cls}`, list);
  }
  const png = document.createElement("a");
  png.textContent = "heat map .png";
  png.download = `${method}.png`;
  png.href = state.results[method].heat.toDataURL("image/png");
  const npy = document.createElement("a");
  npy.textContent = "values .npy";
  npy.download = `${method}.npy`;
  npy.href = URL.createObjectURL(npyBlob(first, [h, w]));
  box.append(png, npy);
  box.dataset.heatSum = first.reduce((a, b) => a + b, 0).toString();
  box.dataset.state = "done";
  $("results").append(box);
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this image"));
    img.src = src;
  });
}

async function explainAll() {
  const methods = chosenMethods();
  if (!state.model) return setStatus("choose a model", true);
  if (!state.imageB64) return setStatus("choose a scene or upload an image", true);
  if (!methods.length) return setStatus("choose at least one method", true);
  $("results").innerHTML = "";
  state.results = {};
  const image = await loadImage($("preview").src);
  setStatus("explaining …");
  try {
    for (const method of methods) {
      const response = await api("/v1/explain", {
        model: { name: state.model.name }, method,
        images: { encoded: { data: [state.imageB64] }, resize: true },
        params: paramsOf(method),
      });
      await showResult(method, response, image);
    }
    setStatus(`done: ${methods.join(", ")}`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

$("model").addEventListener("change", chooseModel);
$("scene").addEventListener("change", chooseScene);
$("upload").addEventListener("change", chooseUpload);
$("opacity").addEventListener("input", () => Object.keys(state.results).forEach(draw));
$("explain").addEventListener("click", explainAll);
$("token").addEventListener("change", loadModels);
loadModels();
