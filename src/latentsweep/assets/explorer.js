// The latent explorer: a study's VAEs run in the page, in plain JavaScript (explorer.py writes the page).
// Nothing here reaches the network: the weights, images and numbers come from the JSON in the page.
"use strict";
(() => {
  const DATA = JSON.parse(document.getElementById("study-data").textContent);
  const [CHANNELS, HEIGHT, WIDTH] = DATA.image_shape || [1, 28, 28];
  const AREA = HEIGHT * WIDTH, PIXELS = CHANNELS * AREA, STEPS = 8, SAMPLES = 8;
  const MNIST_SIDE = 28;  // a 28x28 grey data set gets MNIST's own preprocessing of a drawing
  const DRAWABLE = CHANNELS === 1;  // drawing an input is offered for grey data sets only
  const DISPLAY = 28 / Math.max(HEIGHT, WIDTH);  // CSS pixels per image pixel at scale 1: a 28-pixel-wide image's size

  // ---------------------------------------------------------------- numbers

  function base64Bytes(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  // Every float16 bit pattern as a float, once: decoding the weights is then a table lookup.
  const HALF = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 0x1f, fraction = h & 0x3ff;
    HALF[h] = exponent === 0 ? sign * fraction * 2 ** -24
      : exponent === 31 ? (fraction ? NaN : sign * Infinity)
        : sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }

  function float16(text) {
    const bytes = base64Bytes(text);
    const view = new DataView(bytes.buffer);
    const values = new Float32Array(bytes.length / 2);
    for (let i = 0; i < values.length; i++) values[i] = HALF[view.getUint16(2 * i, true)];
    return values;
  }

  // A weight tensor as int8 values with one float32 scale per slice of its first axis (explorer.int8_base64).
  function int8(weight) {
    const q = new Int8Array(base64Bytes(weight.q).buffer);
    const scaleBytes = base64Bytes(weight.scale);
    const scales = new Float32Array(scaleBytes.buffer, 0, scaleBytes.length / 4);
    const block = q.length / scales.length, values = new Float32Array(q.length);
    for (let i = 0; i < q.length; i++) values[i] = q[i] * scales[Math.floor(i / block)];
    return values;
  }

  // ---------------------------------------------------------------- layers, as PyTorch computes them

  function conv2d(x, [channels, height, width], layer) {
    const { out, kernel: k, stride: s, padding: p, weight: w, bias: b } = layer;
    const oh = Math.floor((height + 2 * p - k) / s) + 1, ow = Math.floor((width + 2 * p - k) / s) + 1;
    const y = new Float32Array(out * oh * ow);
    for (let o = 0; o < out; o++) {
      for (let oy = 0; oy < oh; oy++) {
        for (let ox = 0; ox < ow; ox++) {
          let sum = b[o];
          for (let c = 0; c < channels; c++) {
            for (let ky = 0; ky < k; ky++) {
              const iy = oy * s - p + ky;
              if (iy < 0 || iy >= height) continue;
              const row = (c * height + iy) * width, wrow = ((o * channels + c) * k + ky) * k;
              for (let kx = 0; kx < k; kx++) {
                const ix = ox * s - p + kx;
                if (ix >= 0 && ix < width) sum += w[wrow + kx] * x[row + ix];
              }
            }
          }
          y[(o * oh + oy) * ow + ox] = sum;
        }
      }
    }
    return [y, [out, oh, ow]];
  }

  function convTranspose2d(x, [channels, height, width], layer) {
    const { out, kernel: k, stride: s, padding: p, weight: w, bias: b } = layer;  // weight (in, out, k, k)
    const [padRows, padColumns] = layer.output_padding || [0, 0];  // one more row or column where a side was odd
    const oh = (height - 1) * s - 2 * p + k + padRows, ow = (width - 1) * s - 2 * p + k + padColumns;
    const y = new Float32Array(out * oh * ow);
    for (let o = 0; o < out; o++) y.fill(b[o], o * oh * ow, (o + 1) * oh * ow);
    for (let c = 0; c < channels; c++) {
      for (let iy = 0; iy < height; iy++) {
        for (let ix = 0; ix < width; ix++) {
          const v = x[(c * height + iy) * width + ix];
          if (v === 0) continue;  // after a ReLU most inputs are zero
          for (let o = 0; o < out; o++) {
            for (let ky = 0; ky < k; ky++) {
              const oy = iy * s - p + ky;
              if (oy < 0 || oy >= oh) continue;
              const row = (o * oh + oy) * ow, wrow = ((c * out + o) * k + ky) * k;
              for (let kx = 0; kx < k; kx++) {
                const ox = ix * s - p + kx;
                if (ox >= 0 && ox < ow) y[row + ox] += v * w[wrow + kx];
              }
            }
          }
        }
      }
    }
    return [y, [out, oh, ow]];
  }

  function linear(x, shape, layer) {
    const { in: n, out, weight: w, bias: b } = layer;
    const y = new Float32Array(out);
    for (let o = 0; o < out; o++) {
      let sum = b[o];
      const row = o * n;
      for (let i = 0; i < n; i++) sum += w[row + i] * x[i];
      y[o] = sum;
    }
    return [y, [out]];
  }

  const LAYERS = {
    conv2d, conv_transpose2d: convTranspose2d, linear,
    relu: (x, shape) => [x.map((v) => (v > 0 ? v : 0)), shape],
    flatten: (x) => [x, [x.length]],
    unflatten: (x, shape, layer) => [x, layer.shape],
  };

  function prepare(layers) {
    return layers.map((layer) => ({
      ...layer,
      weight: layer.weight === undefined ? undefined : int8(layer.weight),
      bias: layer.bias === undefined ? undefined : float16(layer.bias),
    }));
  }

  function run(layers, x, shape) {
    for (const layer of layers) [x, shape] = LAYERS[layer.type](x, shape, layer);
    return x;
  }

  // A size's model: a network's whole code, or for a prefix of an ordered model the first latentDim of its
  // codeSize units, the rest at the prior's mean, 0 (model.Prefix).
  class Model {
    constructor(size, network) {
      this.latentDim = size.latent_dim;
      this.codeSize = network.code_size;
      this.encoder = prepare(network.encoder);
      this.decoder = prepare(network.decoder);
    }
    // Posterior mean and log-variance of an image (channels, height, width) with values in [0, 1].
    encode(image) {
      const out = run(this.encoder, Float32Array.from(image), [CHANNELS, HEIGHT, WIDTH]);
      return { mean: out.slice(0, this.latentDim), logVar: out.slice(this.codeSize, this.codeSize + this.latentDim) };
    }
    // The image decoded from a latent code: Bernoulli means, the sigmoid of the logits.
    decode(code) {
      const full = new Float32Array(this.codeSize);
      full.set(code);
      return run(this.decoder, full, [this.codeSize]).map((v) => 1 / (1 + Math.exp(-v)));
    }
  }

  // ---------------------------------------------------------------- MNIST-style preprocessing of a drawing

  // Box-filter resampling of the region (x0, y0, w, h) of a width-wide grey image onto tw x th pixels:
  // each target pixel averages the source area it covers, partial pixels weighted by their overlap.
  function resampleArea(ink, width, x0, y0, w, h, tw, th) {
    const rows = new Float64Array(h * tw);
    for (let y = 0; y < h; y++) {
      for (let tx = 0; tx < tw; tx++) {
        const from = tx * w / tw, to = (tx + 1) * w / tw;
        let sum = 0;
        for (let x = Math.floor(from); x < Math.ceil(to); x++) {
          sum += ink[(y0 + y) * width + x0 + x] * (Math.min(to, x + 1) - Math.max(from, x));
        }
        rows[y * tw + tx] = sum / (to - from);
      }
    }
    const out = new Float64Array(th * tw);
    for (let ty = 0; ty < th; ty++) {
      const from = ty * h / th, to = (ty + 1) * h / th;
      for (let tx = 0; tx < tw; tx++) {
        let sum = 0;
        for (let y = Math.floor(from); y < Math.ceil(to); y++) {
          sum += rows[y * tw + tx] * (Math.min(to, y + 1) - Math.max(from, y));
        }
        out[ty * tw + tx] = sum / (to - from);
      }
    }
    return out;
  }

  // A drawing as the models' input. For 28x28 as MNIST's digits were made: the ink's bounding box scaled
  // (aspect kept) into 20x20 pixels with grey anti-aliasing, then placed in the 28x28 field so that its centre
  // of mass is at the centre. For any other grey size, the whole canvas averaged down onto the image's pixels.
  function preprocess(canvas) {
    if (HEIGHT === MNIST_SIDE && WIDTH === MNIST_SIDE) return mnistPreprocess(canvas);
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const ink = Float64Array.from({ length: canvas.width * canvas.height }, (_, i) => pixels[4 * i] / 255);
    return Float32Array.from(resampleArea(ink, canvas.width, 0, 0, canvas.width, canvas.height, WIDTH, HEIGHT),
      (v) => Math.min(1, v));
  }

  function mnistPreprocess(canvas) {
    const SIDE = MNIST_SIDE, PIXELS = SIDE * SIDE;
    const { width, height } = canvas;
    const pixels = canvas.getContext("2d").getImageData(0, 0, width, height).data;
    const ink = new Float64Array(width * height);
    let x0 = width, y0 = height, x1 = -1, y1 = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = pixels[4 * (y * width + x)] / 255;
        ink[y * width + x] = v;
        if (v > 0) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
      }
    }
    const image = new Float32Array(PIXELS);
    if (x1 < 0) return image;
    const w = x1 - x0 + 1, h = y1 - y0 + 1, scale = 20 / Math.max(w, h);
    const tw = Math.max(1, Math.round(w * scale)), th = Math.max(1, Math.round(h * scale));
    const small = resampleArea(ink, width, x0, y0, w, h, tw, th);
    let mass = 0, cx = 0, cy = 0;
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) { const v = small[y * tw + x]; mass += v; cx += v * x; cy += v * y; }
    }
    const clamp = (v, size) => Math.min(Math.max(v, 0), SIDE - size);
    const left = clamp(Math.round((SIDE - 1) / 2 - cx / mass), tw), top = clamp(Math.round((SIDE - 1) / 2 - cy / mass), th);
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) image[(top + y) * SIDE + left + x] = Math.min(1, small[y * tw + x]);
    }
    return image;
  }

  // ---------------------------------------------------------------- measures, random codes

  function psnr(a, b) {
    let sum = 0;
    for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
    const mse = sum / a.length;
    return { mse, psnr: 10 * Math.log10(1 / Math.max(mse, 1e-10)) };
  }

  // mulberry32: a small seeded generator, so a seed number gives the same samples on every visit.
  function generator(seed) {
    let state = seed >>> 0;
    return () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function normals(random, count) {  // Box-Muller
    const values = new Float32Array(count);
    for (let i = 0; i < count; i += 2) {
      const radius = Math.sqrt(-2 * Math.log(1 - random())), angle = 2 * Math.PI * random();
      values[i] = radius * Math.cos(angle);
      if (i + 1 < count) values[i + 1] = radius * Math.sin(angle);
    }
    return values;
  }

  // ---------------------------------------------------------------- drawing helpers

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function imageCanvas(scale, label) {
    const canvas = element("canvas", { width: WIDTH, height: HEIGHT, class: "digit", role: "img", "aria-label": label });
    canvas.style.width = `${WIDTH * DISPLAY * scale}px`;
    canvas.style.height = `${HEIGHT * DISPLAY * scale}px`;
    return canvas;
  }

  // An image (channels, height, width) in [0, 1] onto its canvas: grey as grey, three channels as RGB.
  function paint(canvas, image) {
    const context = canvas.getContext("2d");
    const pixels = context.createImageData(WIDTH, HEIGHT);
    const byte = (v) => Math.round(255 * Math.min(1, Math.max(0, v)));
    for (let i = 0; i < AREA; i++) {
      const red = byte(image[i]);
      const rgb = CHANNELS === 3 ? [red, byte(image[AREA + i]), byte(image[2 * AREA + i])] : [red, red, red];
      pixels.data.set([...rgb, 255], 4 * i);
    }
    context.putImageData(pixels, 0, 0);
  }

  const format = (value, digits) => (value === null || value === undefined ? "n/a" : value.toFixed(digits));

  // ---------------------------------------------------------------- the page

  const bytes = base64Bytes(DATA.images);
  const gallery = DATA.image_labels.map((label, i) => ({
    label, index: DATA.image_indices[i], image: Float32Array.from(bytes.subarray(i * PIXELS, (i + 1) * PIXELS), (v) => v / 255),
  }));
  const state = {
    variant: 0, models: {}, input: gallery[0].image, inputName: "", partner: null, codes: {},
    reconstructions: {}, scores: {}, sliderSize: null, sliderCode: null, sliderImage: null,
  };
  const ui = {};

  function variant() { return DATA.variants[state.variant]; }
  // A value with its metric's label and decimals, as the study's tables show it (metrics.REGISTRY): "PSNR dB 21.40".
  function shown(metric, value) { return `${DATA.metrics[metric].label} ${format(value, DATA.metrics[metric].digits)}`; }
  function runnableSizes() { return variant().sizes.filter((size) => size.network); }
  function model(size) {
    const key = `${state.variant}:${size.latent_dim}`;
    if (!state.models[key]) state.models[key] = new Model(size, variant().networks[size.network]);
    return state.models[key];
  }
  function className(label) { return DATA.class_names[label] ?? String(label); }
  // "test image 12 (seven)"; an unlabelled data set's images have no class to name.
  function imageName(index, label) { return `test image ${index}` + (DATA.class_names.length ? ` (${className(label)})` : ""); }

  function setInput(image, name) {
    state.input = Float32Array.from(image);
    state.inputName = name;
    paint(ui.inputCanvas, state.input);
    ui.inputName.textContent = name;
    update();
  }

  function update() {
    state.codes = {}; state.reconstructions = {}; state.scores = {};
    for (const size of runnableSizes()) {
      const m = model(size);
      const code = m.encode(state.input);
      const reconstruction = m.decode(code.mean);
      state.codes[size.latent_dim] = code;
      state.reconstructions[size.latent_dim] = reconstruction;
      state.scores[size.latent_dim] = psnr(state.input, reconstruction);
      paint(ui.cards[size.latent_dim].canvas, reconstruction);
      const score = state.scores[size.latent_dim];
      ui.cards[size.latent_dim].score.textContent = `this image: ${shown("mse", score.mse)}, ${shown("psnr", score.psnr)}`;
    }
    resetSliders();
    drawInterpolation();
  }

  function headline(size) {
    const digits = DATA.metrics.psnr.digits;
    const ci = size.psnr_ci && size.psnr_ci[0] !== null ? ` [${format(size.psnr_ci[0], digits)}, ${format(size.psnr_ci[1], digits)}]` : "";
    const over = size.ci_over === "seeds" ? "95% CI across seeds" : "95% CI across test images";
    const units = size.active_units === null ? "n/a" : Number.isInteger(size.active_units) ? size.active_units : size.active_units.toFixed(1);
    return `test set: ${shown("psnr", size.psnr)}${ci} (${over}); ${DATA.metrics.active_units.label} ${units} of ${size.latent_dim}`;
  }

  function inactive(size, dimension) {
    if (size.posterior_mean_variance) return size.posterior_mean_variance[dimension] <= DATA.active_threshold;
    return size.kl_per_dimension ? size.kl_per_dimension[dimension] < DATA.active_threshold : false;
  }

  function buildCards() {
    ui.cards = {};
    ui.cardRow.replaceChildren();
    for (const size of variant().sizes) {
      const canvas = imageCanvas(4, `reconstruction at latent size ${size.latent_dim}`);
      const score = element("div", { class: "score" });
      const card = element("figure", { class: `card${size.selected ? " selected" : ""}`, "data-size": size.latent_dim },
        element("figcaption", {}, element("strong", { text: `size ${size.latent_dim}` }),
          size.selected ? element("span", { class: "badge", text: "selected" }) : null),
        size.network ? canvas : element("p", { class: "note", text: "a user's own architecture: this page cannot run it" }),
        score, element("div", { class: "headline", text: headline(size) }),
        element("div", { class: "seed", text: `model of seed ${size.seed}` }));
      if (size.network) card.addEventListener("click", () => { ui.sliderSelect.value = size.latent_dim; resetSliders(); });
      ui.cards[size.latent_dim] = { canvas, score };
      ui.cardRow.append(card);
    }
  }

  function resetSliders() {
    const chosen = runnableSizes().find((size) => String(size.latent_dim) === ui.sliderSelect.value) || runnableSizes()[0];
    if (!chosen) return;
    state.sliderSize = chosen.latent_dim;
    state.sliderCode = Float32Array.from(state.codes[chosen.latent_dim].mean);
    const kl = chosen.kl_per_dimension || Array.from({ length: chosen.latent_dim }, () => 0);
    const order = [...kl.keys()].sort((a, b) => kl[b] - kl[a]);
    ui.sliders.replaceChildren();
    for (const dimension of order) {
      const off = inactive(chosen, dimension);
      const slider = element("input", {
        type: "range", min: -4, max: 4, step: 0.05, value: state.sliderCode[dimension].toFixed(2),
        "aria-label": `latent dimension ${dimension}`, "data-dimension": dimension, class: off ? "inactive" : "active",
        oninput: (event) => { state.sliderCode[dimension] = Number(event.target.value); decodeSliders(); },
      });
      ui.sliders.append(element("label", { class: `slider${off ? " off" : ""}` },
        element("span", { class: "name", text: `z${dimension}` }),
        slider,
        element("span", { class: "kl", text: `KL ${format(kl[dimension], DATA.metrics.kl.digits)}${off ? " · inactive" : ""}` })));
    }
    decodeSliders();
  }

  function decodeSliders() {
    const size = runnableSizes().find((s) => s.latent_dim === state.sliderSize);
    state.sliderImage = model(size).decode(state.sliderCode);
    paint(ui.sliderCanvas, state.sliderImage);
  }

  function drawInterpolation() {
    ui.interpolation.replaceChildren();
    const partner = state.partner || gallery.find((item) => item.label !== gallery[0].label) || gallery[0];
    ui.partnerName.textContent = partner.name || imageName(partner.index, partner.label);
    for (const size of runnableSizes()) {
      const m = model(size);
      const a = state.codes[size.latent_dim].mean, b = m.encode(partner.image).mean;
      const row = element("div", { class: "strip" }, element("span", { class: "row-label", text: `z=${size.latent_dim}` }));
      for (let step = 0; step < STEPS; step++) {
        const t = step / (STEPS - 1);
        const canvas = imageCanvas(2, `latent size ${size.latent_dim}, interpolation ${t.toFixed(2)}`);
        paint(canvas, m.decode(a.map((v, i) => (1 - t) * v + t * b[i])));
        row.append(canvas);
      }
      ui.interpolation.append(row);
    }
  }

  function drawSamples() {
    const seed = Math.max(0, Math.floor(Number(ui.seed.value) || 0));
    ui.samples.replaceChildren();
    for (const size of runnableSizes()) {
      const random = generator(seed * 1009 + size.latent_dim);
      const m = model(size);
      const row = element("div", { class: "strip" }, element("span", { class: "row-label", text: `z=${size.latent_dim}` }));
      for (let i = 0; i < SAMPLES; i++) {
        const canvas = imageCanvas(2, `sample ${i + 1} at latent size ${size.latent_dim}, seed ${seed}`);
        paint(canvas, m.decode(normals(random, size.latent_dim)));
        row.append(canvas);
      }
      ui.samples.append(row);
    }
  }

  function setupDrawing(canvas) {
    const context = canvas.getContext("2d");
    const clear = () => { context.fillStyle = "black"; context.fillRect(0, 0, canvas.width, canvas.height); };
    clear();
    let last = null, pending = false;
    const point = (event) => {
      const box = canvas.getBoundingClientRect();
      return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
    };
    const refresh = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; setInput(preprocess(canvas), "your drawing"); });
    };
    canvas.addEventListener("pointerdown", (event) => {
      canvas.setPointerCapture(event.pointerId);
      last = point(event);
      context.fillStyle = "white";
      context.beginPath();
      context.arc(last[0], last[1], Math.max(canvas.width, canvas.height) / 28, 0, 2 * Math.PI);
      context.fill();
      refresh();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!last) return;
      const next = point(event);
      context.strokeStyle = "white";
      context.lineWidth = Math.max(canvas.width, canvas.height) / 14;  // the stroke scales with the image
      context.lineCap = context.lineJoin = "round";
      context.beginPath();
      context.moveTo(...last);
      context.lineTo(...next);
      context.stroke();
      last = next;
      refresh();
    });
    const stop = () => { last = null; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    return clear;
  }

  function build() {
    document.title = DATA.title;
    const variantSelect = element("select", { "aria-label": DATA.variant_axes.join(" and "),
      onchange: (event) => { state.variant = Number(event.target.value); rebuild(); } });
    DATA.variants.forEach((v, i) => variantSelect.append(element("option", { value: i, text: v.name })));
    const shown = DATA.variants.length > 1 ? element("label", { class: "variant" }, "Model: ", variantSelect) : null;

    // The drawing field has the images' aspect, 280 pixels on its longer side.
    const drawing = DRAWABLE ? element("canvas", { width: Math.round(280 * WIDTH / Math.max(HEIGHT, WIDTH)),
      height: Math.round(280 * HEIGHT / Math.max(HEIGHT, WIDTH)), class: "draw", "aria-label": "draw here" }) : null;
    if (drawing) [drawing.style.width, drawing.style.height] = [`${drawing.width * 276 / 280}px`, `${drawing.height * 276 / 280}px`];
    const clear = drawing ? setupDrawing(drawing) : null;
    ui.inputCanvas = imageCanvas(3, "the image the models see");
    ui.inputName = element("div", { class: "note" });
    ui.pickMode = element("select", { "aria-label": "a click on a test image picks" },
      element("option", { value: "input", text: "picks the input" }), element("option", { value: "partner", text: "picks B for the interpolation" }));
    const thumbs = element("div", { class: "gallery" });
    gallery.forEach((item) => {
      item.name = imageName(item.index, item.label);
      const canvas = imageCanvas(1, item.name);
      paint(canvas, item.image);
      canvas.addEventListener("click", () => {
        if (ui.pickMode.value === "partner") { state.partner = item; drawInterpolation(); } else setInput(item.image, item.name);
      });
      thumbs.append(canvas);
    });
    const useAsPartner = element("button", { text: "Use as B", onclick: () => {
      state.partner = { image: Float32Array.from(state.input), name: state.inputName, label: -1, index: -1 }; drawInterpolation();
    } });

    ui.cardRow = element("div", { class: "cards" });
    ui.sliderSelect = element("select", { "aria-label": "latent size of the sliders", onchange: () => resetSliders() });
    ui.sliderCanvas = imageCanvas(6, "the image decoded from the sliders' code");
    ui.sliders = element("div", { class: "sliders" });
    ui.interpolation = element("div", { class: "rows" });
    ui.partnerName = element("span");
    ui.samples = element("div", { class: "rows" });
    ui.seed = element("input", { type: "number", min: 0, value: 0, "aria-label": "seed of the samples" });

    const first = DATA.variants.find((v) => v.runnable) ? "" : "None of these architectures runs in this page. ";
    document.body.append(
      element("header", {},
        element("h1", { text: "How small can the latent space be? Try it." }),
        element("p", { class: "lead", text: `${first}Every latent size of the study on ${DATA.dataset}, running in this page ` +
          `(one seed's model of each; seeds in the study: ${DATA.seeds.join(", ")}). ` +
          `${DRAWABLE ? "Draw or pick a test image" : "Pick a test image"} (${CHANNELS === 3 ? "colour" : "grey"}, ${WIDTH}x${HEIGHT}); ` +
          "each size reconstructs it from its posterior mean." }),
        shown, element("a", { href: "report.html", text: "the study's report" })),
      element("main", {},
        element("section", { class: "input" }, element("h2", { text: DRAWABLE ? "1. Draw or pick" : "1. Pick a test image" }), drawing,
          element("div", { class: "buttons" }, drawing ? element("button", { text: "Clear", onclick: () => { clear(); setInput(new Float32Array(PIXELS), "empty canvas"); } }) : null, useAsPartner),
          element("div", { class: "model-input" }, ui.inputCanvas, element("div", {}, element("strong", { text: "what the models see" }), ui.inputName)),
          element("label", { class: "pick" }, "A click on a test image ", ui.pickMode), thumbs),
        element("section", { class: "reconstructions" }, element("h2", { text: "2. Reconstructed at every latent size" }), ui.cardRow),
        element("section", { class: "explore" }, element("h2", {}, "3. One slider per latent dimension, latent size ", ui.sliderSelect),
          element("p", { class: "note", text: "Dimensions ordered by their mean KL over the test set, largest first; an inactive dimension " +
            "(its posterior mean hardly varies across test images) barely changes the image." }),
          element("div", { class: "slider-view" }, ui.sliderCanvas, element("button", { text: "Reset to the image's code", onclick: () => resetSliders() })),
          ui.sliders),
        element("div", { class: "lower" },
          element("section", { class: "interpolate" }, element("h2", { text: "4. From the input (A) to B, at every size" }),
            element("p", { class: "note" }, "B: ", ui.partnerName), ui.interpolation),
          element("section", { class: "sample" }, element("h2", { text: "5. Samples from the prior N(0, I)" }),
            element("div", { class: "buttons" }, element("label", {}, "seed ", ui.seed), element("button", { text: "Sample", onclick: drawSamples })),
            ui.samples))));
  }

  function rebuild() {
    state.models = {};
    buildCards();
    ui.sliderSelect.replaceChildren(...runnableSizes().map((size) => element("option", { value: size.latent_dim, text: size.latent_dim })));
    const chosen = runnableSizes().find((size) => size.selected) || runnableSizes()[0];
    if (chosen) ui.sliderSelect.value = chosen.latent_dim;
    if (!runnableSizes().length) {
      ui.sliders.replaceChildren(element("p", { class: "note", text: `${variant().name}: a user's own architecture; this page cannot run it.` }));
      ui.interpolation.replaceChildren(); ui.samples.replaceChildren();
      return;
    }
    setInput(state.input, state.inputName || gallery[0].name);
    drawSamples();
  }

  build();
  rebuild();

  // For tests and for the curious (the browser console): the models and what the page shows.
  window.explorer = {
    data: DATA, state, preprocess,
    encode: (size, image) => Array.from(model(variant().sizes.find((s) => s.latent_dim === size)).encode(image).mean),
    decode: (size, code) => Array.from(model(variant().sizes.find((s) => s.latent_dim === size)).decode(code)),
    // Milliseconds per decode at each size, over `repeats` decodes of random codes.
    timeDecode(repeats = 200) {
      const result = {};
      for (const size of runnableSizes()) {
        const m = model(size), random = generator(1), codes = Array.from({ length: repeats }, () => normals(random, size.latent_dim));
        m.decode(codes[0]);
        const started = performance.now();
        for (const code of codes) m.decode(code);
        result[size.latent_dim] = (performance.now() - started) / repeats;
      }
      return result;
    },
  };
})();
