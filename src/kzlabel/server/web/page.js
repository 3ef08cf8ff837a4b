// The verification page: sends the chosen file to POST /verify (the public API, nothing private) and shows the
// report in plain words. No framework and no HTML built from strings: every value goes in through textContent, so
// nothing in a report can run as code (the server's Content-Security-Policy also forbids it).
(function () {
  'use strict';

  var STRINGS = window.KZ_STRINGS;
  var LANGS = ['kk', 'ru', 'en'];
  var STORE_KEY = 'kzlabel.lang';
  var IPTC = 'http://cv.iptc.org/newscodes/digitalsourcetype/';
  var state = { lang: 'en', file: null, url: null, report: null, error: null, seq: 0 };

  function $(id) { return document.getElementById(id); }

  function t(key, vars) {
    var table = STRINGS[state.lang] || STRINGS.en;
    var text = key in table ? table[key] : (key in STRINGS.en ? STRINGS.en[key] : null);
    if (text === null) { return null; }
    Object.keys(vars || {}).forEach(function (k) { text = text.split('{' + k + '}').join(String(vars[k])); });
    return text;
  }

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function show(node, visible) { node.hidden = !visible; }

  // ---- language ---------------------------------------------------------------------------------------------------

  function primary(tag) { return String(tag || '').toLowerCase().split(/[-_]/)[0]; }

  function chooseLang() {
    try {
      var saved = window.localStorage.getItem(STORE_KEY);
      if (LANGS.indexOf(saved) >= 0) { return saved; }
    } catch (e) { /* storage off: follow the browser */ }
    var wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    for (var i = 0; i < wanted.length; i++) {
      if (LANGS.indexOf(primary(wanted[i])) >= 0) { return primary(wanted[i]); }
    }
    return 'en';
  }

  function setLang(lang, remember) {
    state.lang = lang;
    if (remember) {
      try { window.localStorage.setItem(STORE_KEY, lang); } catch (e) { /* not remembered, still switched */ }
    }
    document.documentElement.lang = lang;
    document.title = t('doc_title');
    $('lang').value = lang;
    document.querySelectorAll('[data-i18n]').forEach(function (node) { node.textContent = t(node.dataset.i18n); });
    document.querySelectorAll('[data-i18n-label]').forEach(function (node) {
      node.setAttribute('aria-label', t(node.dataset.i18nLabel));
    });
    render();
  }

  // ---- formatting -------------------------------------------------------------------------------------------------

  var SUPERSCRIPT = { '-': '⁻', '0': '⁰', '1': '¹', '2': '²', '3': '³', '4': '⁴', '5': '⁵', '6': '⁶', '7': '⁷', '8': '⁸', '9': '⁹' };

  function formatP(p) {
    if (typeof p !== 'number' || !isFinite(p)) { return '—'; }
    if (p === 0) { return '< 10⁻³⁰⁰'; }
    if (p >= 0.001) { return String(Number(p.toPrecision(2))); }
    var exp = Math.floor(Math.log10(p));
    var mant = p / Math.pow(10, exp);
    if (mant >= 9.95) { mant /= 10; exp += 1; }
    var sup = String(exp).split('').map(function (c) { return SUPERSCRIPT[c]; }).join('');
    return mant.toFixed(1) + ' × 10' + sup;
  }

  // one unambiguous form in every language (browsers' Kazakh date data is often missing): 2026-12-05 07:15 UTC
  function formatTime(iso) {
    var when = new Date(iso);
    if (isNaN(when.getTime())) { return iso; }
    return when.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }

  function statusWord(status) { return t('status.' + status) || status; }

  function layerName(layer) {
    var parts = layer.split(':');
    var name = t('layer.' + parts[0]) || parts[0];
    if (parts[1]) { name += ' (' + (t('part.' + parts[1]) || parts[1]) + ')'; }
    return name;
  }

  function sourceWords(uri) {
    if (!uri) { return null; }
    var code = uri.indexOf(IPTC) === 0 ? uri.slice(IPTC.length) : null;
    return (code && t('src.' + code)) || null;
  }

  // ---- checking a file --------------------------------------------------------------------------------------------

  function check(file) {
    if (!file) { return; }
    var seq = ++state.seq;
    if (state.url) { URL.revokeObjectURL(state.url); }
    state.file = file;
    state.url = URL.createObjectURL(file);
    state.report = null;
    state.error = null;
    $('status').textContent = t('checking', { name: file.name });
    $('verdict').setAttribute('aria-busy', 'true');
    var body = new FormData();
    body.append('file', file, file.name);
    fetch('/verify', { method: 'POST', body: body, headers: { Accept: 'application/json' } })
      .then(function (resp) {
        return resp.json().then(
          function (json) { return { ok: resp.ok, json: json }; },
          function () { return { ok: false, json: { error: 'generic', reason: 'HTTP ' + resp.status } }; }
        );
      })
      .then(function (answer) {
        if (seq !== state.seq) { return; }  // a newer file was chosen meanwhile
        if (answer.ok) { state.report = answer.json; } else { state.error = answer.json; }
        done();
      }, function () {
        if (seq !== state.seq) { return; }
        state.error = { error: 'network', reason: '' };
        done();
      });
  }

  function done() {
    $('status').textContent = '';
    $('verdict').removeAttribute('aria-busy');
    render();
  }

  // ---- rendering --------------------------------------------------------------------------------------------------

  function render() {
    var verdict = $('verdict');
    verdict.className = 'verdict';
    if (state.error) { return renderError(state.error); }
    var report = state.report;
    show($('result'), !!report);
    if (!report) { return; }
    var kind = { compliant: 'good', tampered: 'bad', stripped: 'bad', unlabelled: 'none' }[report.verdict] || 'warn';
    if (kind === 'good' && !report.accepted) { kind = 'warn'; }
    verdict.className = 'verdict verdict--' + kind;
    $('verdict-title').textContent = t('verdict.' + report.verdict) || report.verdict;
    $('verdict-title').dataset.verdict = report.verdict;
    $('verdict-text').textContent = t('verdict.' + report.verdict + '.text') || '';
    $('verdict-reason').textContent = '';
    var accepted = $('accepted');
    accepted.textContent = report.accepted ? t('accepted_yes')
      : (report.verdict === 'compliant' ? t('accepted_untrusted') : t('accepted_not_compliant'));
    accepted.dataset.accepted = String(!!report.accepted);
    $('file-line').textContent = t('file_line', { name: state.file ? state.file.name : report.source, format: report.format });
    renderLabel(report);
    renderC2pa(report);
    renderWatermark(report);
    renderPreview(report);
    renderEvidence(report);
    $('raw-json').textContent = JSON.stringify(report, null, 2);
  }

  function renderError(error) {
    show($('result'), false);
    $('verdict').className = 'verdict verdict--bad';
    $('verdict-title').textContent = t('error_title');
    $('verdict-title').dataset.verdict = 'error';
    $('verdict-text').textContent = t('err.' + error.error) || t('err.generic');
    $('verdict-reason').textContent = error.reason || '';
    $('accepted').textContent = '';
    $('file-line').textContent = state.file ? t('file_line', { name: state.file.name, format: '—' }) : '';
  }

  function layer(report, name) {
    return (report.evidence || []).filter(function (e) { return e.layer === name || e.layer.indexOf(name + ':') === 0; })[0] || null;
  }

  function renderLabel(report) {
    var label = report.label;
    show($('label-none'), !label);
    show($('label-fields'), !!label);
    show($('label-recovered'), !!(label && report.label_recovered_from_registry));
    if (!label) { return; }
    $('label-owner').textContent = label.owner;
    $('label-system').textContent = [label.system, label.system_version].filter(Boolean).join(' ');
    var created = $('label-created');
    clear(created);
    created.appendChild(el('time', formatTime(label.created), { datetime: label.created }));
    var notice = $('label-notice');
    clear(notice);
    var notices = (label.notice || []).slice().sort(function (a, b) {
      return (b.lang === state.lang) - (a.lang === state.lang);
    });
    var list = el('ul', null, { class: 'plain' });
    notices.forEach(function (n) { list.appendChild(el('li', n.text, { lang: n.lang })); });
    notice.appendChild(list);
    $('label-id').textContent = label.content_id;
  }

  function renderC2pa(report) {
    var ev = layer(report, 'c2pa');
    var present = ev && ev.status !== 'absent' && ev.status !== 'unavailable';
    show($('c2pa-fields'), !!present);
    show($('c2pa-none'), !present);
    if (!present) {
      $('c2pa-none').textContent = ev && ev.status === 'unavailable' ? t('c2pa_unavailable') : t('c2pa_absent');
      return;
    }
    var data = ev.data || {};
    var trust = $('c2pa-trust');
    trust.textContent = statusWord(ev.status);
    trust.dataset.status = ev.status;
    var signer = data.signer || {};
    $('c2pa-signer').textContent = [signer.common_name, signer.issuer].filter(Boolean).join(', ')
      + (signer.alg ? ' · ' + signer.alg : '') || t('none');
    var actions = $('c2pa-actions');
    clear(actions);
    (data.actions || []).forEach(function (a) {
      var item = el('li', (t('act.' + a) || a) + ' ');
      item.appendChild(el('code', a, { lang: 'en' }));
      actions.appendChild(item);
    });
    if (!actions.firstChild) { actions.appendChild(el('li', t('none'))); }
    var source = $('c2pa-source');
    clear(source);
    var words = sourceWords(data.digital_source_type);
    if (words) { source.appendChild(el('span', words + ' ')); }
    source.appendChild(el('code', data.digital_source_type || t('none'), { class: 'uri', lang: 'en' }));
    var ingredients = $('c2pa-ingredients');
    clear(ingredients);
    (data.ingredients || []).forEach(function (i) {
      var bits = [t('rel.' + i.relationship) || i.relationship, i.format, i.has_manifest ? t('has_manifest') : null];
      ingredients.appendChild(el('li', (i.title || '?') + ' (' + bits.filter(Boolean).join(', ') + ')'));
    });
    if (!ingredients.firstChild) { ingredients.appendChild(el('li', t('none'))); }
  }

  function renderWatermark(report) {
    var ev = layer(report, 'watermark');
    var data = (ev && ev.data) || {};
    $('wm-status').textContent = ev ? statusWord(ev.status) : t('status.unavailable');
    $('wm-status').dataset.status = ev ? ev.status : 'unavailable';
    var p = $('wm-pvalue');
    p.textContent = formatP(data.p_value);
    p.dataset.value = typeof data.p_value === 'number' ? String(data.p_value) : '';
    var payload = $('wm-payload');
    var unreadable = ev && ev.status === 'found' && data.payload === null;  // a mark whose payload did not decode
    payload.textContent = data.payload || t(unreadable ? 'payload_unreadable' : 'none');
    if (data.matches_label) { payload.textContent += ' — ' + t('matches_label'); }
  }

  function warningParts(label) {
    var w = label && label.warning;
    if (!w) { return []; }
    if (Array.isArray(w.box)) { return [{ part: 'overlay', box: w.box, caption: null }]; }
    var parts = w.parts || {};
    return Object.keys(parts).filter(function (k) { return Array.isArray(parts[k].box); }).map(function (k) {
      var caption = k === 'opening' ? t('part_opening', { s: w.opening_s || 2 }) : (t('part_' + k) || k);
      return { part: k, box: parts[k].box, caption: caption };
    });
  }

  function renderPreview(report) {
    var holder = $('preview');
    clear(holder);
    var type = (state.file && state.file.type) || '';
    var kind = report.label && report.label.warning && report.label.warning.kind;
    var isImage = type.indexOf('image/') === 0 || kind === 'overlay';
    var isVideo = type.indexOf('video/') === 0 || kind === 'burned-in';
    show($('preview-section'), !!(state.url && (isImage || isVideo)));
    if (!state.url || !(isImage || isVideo)) { return; }
    var frame = el('div', null, { class: 'frame' });
    var media = isVideo && !isImage
      ? el('video', null, { controls: '', muted: '', preload: 'metadata', playsinline: '' })
      : el('img', null, { alt: state.file ? state.file.name : '' });
    media.src = state.url;
    media.addEventListener('error', function () {
      clear(holder);
      holder.appendChild(el('p', t('preview_unavailable'), { class: 'none' }));
    });
    frame.appendChild(media);
    var parts = warningParts(report.label);
    var boxes = parts.map(function (p) {
      var box = el('div', null, { class: 'warn-box', 'data-part': p.part, 'aria-hidden': 'true' });
      box.style.left = (100 * p.box[0]) + '%';
      box.style.top = (100 * p.box[1]) + '%';
      box.style.width = (100 * p.box[2]) + '%';
      box.style.height = (100 * p.box[3]) + '%';
      if (p.caption) { box.appendChild(el('span', p.caption, { class: 'warn-tag' })); }
      frame.appendChild(box);
      return box;
    });
    if (media.tagName === 'VIDEO' && boxes.length > 1) {  // the opening warning shows first, then the persistent one
      var openingS = (report.label.warning.opening_s || 2);
      var sync = function () {
        parts.forEach(function (p, i) {
          var opening = p.part === 'opening';
          boxes[i].hidden = opening ? media.currentTime >= openingS : media.currentTime < openingS;
        });
      };
      media.addEventListener('timeupdate', sync);
      sync();
    }
    holder.appendChild(frame);
    var visible = layer(report, 'visible');
    var caption = parts.length ? t('caption_outline') + ' '
      + (visible && visible.status === 'found' ? t('caption_found') : t('caption_missing'))
      : t('caption_no_record');
    $('preview-caption').textContent = caption;
  }

  function renderEvidence(report) {
    var body = $('evidence').tBodies[0];
    clear(body);
    (report.evidence || []).forEach(function (e) {
      var row = el('tr', null, { 'data-layer': e.layer });
      var name = el('th', layerName(e.layer) + ' ', { scope: 'row' });
      name.appendChild(el('code', e.layer, { lang: 'en' }));
      row.appendChild(name);
      row.appendChild(el('td', statusWord(e.status), { class: 'st st--' + e.status, 'data-status': e.status }));
      row.appendChild(el('td', e.detail, { lang: 'en' }));
      body.appendChild(row);
    });
  }

  // ---- wiring -----------------------------------------------------------------------------------------------------

  function start() {
    $('lang').addEventListener('change', function (ev) { setLang(ev.target.value, true); });
    $('file').addEventListener('change', function (ev) { check(ev.target.files[0]); });
    var drop = $('drop');
    ['dragenter', 'dragover'].forEach(function (name) {
      drop.addEventListener(name, function (ev) { ev.preventDefault(); drop.classList.add('over'); });
    });
    ['dragleave', 'drop'].forEach(function (name) {
      drop.addEventListener(name, function () { drop.classList.remove('over'); });
    });
    drop.addEventListener('drop', function (ev) {
      ev.preventDefault();
      if (ev.dataTransfer && ev.dataTransfer.files.length) { check(ev.dataTransfer.files[0]); }
    });
    // a file dropped beside the zone must not replace the page
    window.addEventListener('dragover', function (ev) { ev.preventDefault(); });
    window.addEventListener('drop', function (ev) { ev.preventDefault(); });
    setLang(chooseLang(), false);
    document.body.dataset.ready = 'true';
  }

  start();
}());
