// Sign-in, registration, the first-run bootstrap and the account page.

import { h, errorText, replace } from './dom.js';
import { adopt, api, current } from './session.js';

// signInView renders the sign-in screen (or the bootstrap form when the
// server has no accounts yet) into root.
export async function signInView(root) {
  let pending = false;
  try {
    pending = (await api('GET', '/api/v1/auth/bootstrap', undefined, { anonymous: true })).pending;
  } catch { /* show the sign-in form; its errors will explain */ }
  replace(root, h('main', { class: 'auth-page' },
    h('div', { class: 'auth-card' },
      h('h1', { class: 'brand' }, h('img', { src: '/assets/icon.svg', alt: '', width: 32, height: 32 }), 'Unhidra'),
      pending ? bootstrapForm() : signInForm())));
  root.querySelector('input')?.focus();
}

function field(label, attrs) {
  return h('label', {}, label, h('input', { required: true, ...attrs }));
}

// submitting wires a form to an async action with a visible error and a
// disabled button while it runs.
function submitting(form, action) {
  const err = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'form-error' });
  form.appendChild(err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    err.textContent = '';
    form.setAttribute('aria-busy', 'true');
    try {
      await action(Object.fromEntries(new FormData(form)));
    } catch (e2) {
      err.textContent = errorText(e2);
    } finally {
      btn.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });
  return form;
}

function signInForm() {
  let mode = 'signin';
  const title = h('h2', {}, 'Sign in');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const confirm = field('Repeat password', { name: 'confirm', type: 'password', autocomplete: 'new-password', minlength: 8 });
  confirm.hidden = true;
  confirm.querySelector('input').required = false;
  const pw = field('Password', { name: 'password', type: 'password', autocomplete: 'current-password' });
  const toggle = h('button', { type: 'button', class: 'link' }, 'Create an account');
  const form = h('form', { class: 'stack', 'aria-labelledby': 'auth-title' },
    field('Name', { name: 'name', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', maxlength: 32 }),
    pw, confirm, submit);
  title.id = 'auth-title';
  toggle.addEventListener('click', () => {
    mode = mode === 'signin' ? 'register' : 'signin';
    const reg = mode === 'register';
    title.textContent = reg ? 'Create an account' : 'Sign in';
    submit.textContent = reg ? 'Create account' : 'Sign in';
    toggle.textContent = reg ? 'I already have an account' : 'Create an account';
    confirm.hidden = !reg;
    confirm.querySelector('input').required = reg;
    pw.querySelector('input').autocomplete = reg ? 'new-password' : 'current-password';
  });
  submitting(form, async (v) => {
    if (mode === 'register') {
      if (v.password !== v.confirm) throw new Error('The passwords do not match.');
      adopt(await api('POST', '/api/v1/auth/register', { name: v.name, password: v.password }, { anonymous: true }));
    } else {
      adopt(await api('POST', '/api/v1/auth/login', { name: v.name, password: v.password }, { anonymous: true }));
    }
  });
  return h('div', {}, title, form, h('p', { class: 'muted' }, toggle));
}

function bootstrapForm() {
  const form = h('form', { class: 'stack' },
    h('p', {}, 'Welcome. This server has no accounts yet. Enter the one-time code that ',
      h('code', {}, 'unhidra serve'), ' printed at start and choose the administrator’s name and password.'),
    field('One-time code', { name: 'code', autocomplete: 'one-time-code', spellcheck: 'false' }),
    field('Administrator name', { name: 'name', autocomplete: 'username', maxlength: 32 }),
    field('Password (at least 8 characters)', { name: 'password', type: 'password', autocomplete: 'new-password', minlength: 8 }),
    h('button', { type: 'submit', class: 'primary' }, 'Create administrator'));
  submitting(form, async (v) => {
    adopt(await api('POST', '/api/v1/auth/bootstrap', { code: v.code.trim(), name: v.name, password: v.password }, { anonymous: true }));
  });
  return h('div', {}, h('h2', {}, 'First start'), form);
}

// accountView is the page to change one's password.
export function accountView(root) {
  const u = current().user;
  const done = h('p', { class: 'muted', role: 'status' });
  const form = h('form', { class: 'stack narrow' },
    h('input', { type: 'text', name: 'username', autocomplete: 'username', value: u.name, hidden: true, readonly: true }),
    field('Current password', { name: 'current_password', type: 'password', autocomplete: 'current-password' }),
    field('New password (at least 8 characters)', { name: 'new_password', type: 'password', autocomplete: 'new-password', minlength: 8 }),
    field('Repeat the new password', { name: 'confirm', type: 'password', autocomplete: 'new-password', minlength: 8 }),
    h('button', { type: 'submit', class: 'primary' }, 'Change password'), done);
  submitting(form, async (v) => {
    done.textContent = '';
    if (v.new_password !== v.confirm) throw new Error('The new passwords do not match.');
    adopt(await api('PUT', '/api/v1/me/password', { current_password: v.current_password, new_password: v.new_password }));
    form.reset();
    done.textContent = 'Password changed. Your other sessions were signed out.';
  });
  replace(root, h('section', { class: 'page' },
    h('h1', {}, 'Account'),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Name'), h('dd', {}, u.name),
      h('dt', {}, 'Role'), h('dd', {}, u.role),
      h('dt', {}, 'Member since'), h('dd', {}, new Date(u.created_at).toLocaleDateString())),
    h('h2', {}, 'Password'), form));
}
