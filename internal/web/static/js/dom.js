// DOM building without HTML strings: every value becomes a text node or an
// attribute, so user content can never turn into markup (and the page's
// Trusted Types policy forbids string sinks anyway).

// h creates an element. attrs: "class", "text", "on<event>" handlers,
// "dataset" (object), boolean attributes (true/false), others as strings.
// children: nodes, strings, numbers, arrays; null/undefined/false skipped.
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// replace empties el and fills it with children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// toast shows a short notice; kind is "info" or "error".
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : null }, message);
  box.appendChild(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

// errorText turns any thrown value into a sentence for people.
export function errorText(err) {
  if (err && err.message) return err.message;
  return 'Something went wrong.';
}

// modal opens a <dialog> with the content and resolves with the value
// passed to close (undefined when dismissed with Escape or Cancel).
function modal(title, build) {
  return new Promise((resolve) => {
    let result;
    const dlg = h('dialog', { class: 'modal', 'aria-label': title });
    const close = (v) => { result = v; dlg.close(); };
    dlg.addEventListener('close', () => { dlg.remove(); resolve(result); });
    dlg.append(h('h2', {}, title), build(close));
    document.body.appendChild(dlg);
    dlg.showModal();
  });
}

// confirmDialog asks a yes/no question.
export function confirmDialog(title, text, action = 'OK') {
  return modal(title, (close) => h('div', {},
    h('p', {}, text),
    h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => close(false) }, 'Cancel'),
      h('button', { type: 'button', class: 'danger', onclick: () => close(true) }, action))));
}

// formDialog shows labelled fields and resolves with their values, or
// undefined. submit(values) may throw to keep the dialog open with the error.
export function formDialog(title, fields, submitLabel, submit) {
  return modal(title, (close) => {
    const err = h('p', { class: 'form-error', role: 'alert' });
    const inputs = {};
    const form = h('form', { class: 'stack' },
      fields.map((f) => {
        const input = f.type === 'textarea'
          ? h('textarea', { name: f.name, rows: 4, placeholder: f.placeholder, required: f.required })
          : f.type === 'select'
            ? h('select', { name: f.name }, f.options.map((o) => h('option', { value: o }, o)))
            : h('input', {
              name: f.name, type: f.type || 'text', required: f.required, placeholder: f.placeholder,
              autocomplete: f.autocomplete || 'off', maxlength: f.maxlength, minlength: f.minlength,
            });
        if (f.value !== undefined) input.value = f.value;
        inputs[f.name] = input;
        return f.type === 'checkbox'
          ? h('label', { class: 'check' }, input, ' ', f.label)
          : h('label', {}, f.label, input);
      }),
      err,
      h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => close(undefined) }, 'Cancel'),
        h('button', { type: 'submit', class: 'primary' }, submitLabel)));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const values = {};
      for (const [k, el] of Object.entries(inputs)) values[k] = el.type === 'checkbox' ? el.checked : el.value;
      const btn = form.querySelector('button[type=submit]');
      btn.disabled = true;
      try {
        close(submit ? await submit(values) : values);
      } catch (e2) {
        err.textContent = errorText(e2);
      } finally {
        btn.disabled = false;
      }
    });
    return form;
  });
}

// secretDialog shows a secret once, with a copy button.
export function secretDialog(title, text, secret) {
  return modal(title, (close) => {
    const field = h('input', { readonly: true, class: 'secret', value: secret, 'aria-label': 'Secret', 'data-testid': 'secret' });
    const copied = h('span', { class: 'muted', 'aria-live': 'polite' });
    return h('div', { class: 'stack' },
      h('p', {}, text),
      field,
      h('div', { class: 'actions' },
        copied,
        h('button', {
          type: 'button',
          onclick: async () => {
            try {
              await navigator.clipboard.writeText(secret);
              copied.textContent = 'Copied.';
            } catch {
              field.select();
              copied.textContent = 'Select and copy it by hand (Ctrl+C).';
            }
          },
        }, 'Copy'),
        h('button', { type: 'button', class: 'primary', onclick: () => close() }, 'Done')));
  });
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

// ago formats a past time relative to now ("3 minutes ago").
export function ago(iso) {
  if (!iso) return '—';
  const s = (new Date(iso).getTime() - Date.now()) / 1000;
  const abs = Math.abs(s);
  if (abs < 45) return rtf.format(Math.round(s), 'second');
  if (abs < 2700) return rtf.format(Math.round(s / 60), 'minute');
  if (abs < 79200) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

// when formats a time for tables (local, to the second).
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return isNaN(d) ? '—' : d.toLocaleString();
}

// clock formats a message time.
export function clock(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return '';
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

// bytes formats a byte count.
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

// loading is the placeholder shown while a view fetches its data.
export function loading(what = 'Loading…') {
  return h('p', { class: 'loading', 'aria-busy': 'true' }, what);
}

// failure is the message shown when a view could not load, with a retry.
export function failure(err, retry) {
  return h('div', { class: 'failure', role: 'alert' },
    h('p', {}, errorText(err)),
    retry && h('button', { type: 'button', onclick: retry }, 'Try again'));
}
