// Lists the endpoints of /openapi.json as a table: the description stays the single source, this only shows it.
(function () {
  'use strict';
  function el(tag, text) { var n = document.createElement(tag); if (text) { n.textContent = text; } return n; }
  var table = document.getElementById('endpoints');
  var status = document.getElementById('docs-status');
  fetch('/openapi.json').then(function (r) { return r.json(); }).then(function (doc) {
    var body = table.tBodies[0];
    Object.keys(doc.paths).forEach(function (path) {
      Object.keys(doc.paths[path]).forEach(function (method) {
        var op = doc.paths[path][method];
        var row = el('tr');
        var name = el('th');
        name.setAttribute('scope', 'row');
        name.appendChild(el('code', method.toUpperCase() + ' ' + path));
        row.appendChild(name);
        var what = el('td', op.summary || '');
        if (op.description) { what.appendChild(el('p', op.description)); }
        if (op.security) { what.appendChild(el('p', 'Needs Authorization: Bearer <token>.')); }
        row.appendChild(what);
        row.appendChild(el('td', Object.keys(op.responses || {}).join(', ')));
        body.appendChild(row);
      });
    });
    table.hidden = false;
    status.textContent = doc.info.title + ' ' + doc.info.version;
  }, function () {
    status.textContent = 'The description could not be loaded; see /openapi.json.';
  });
}());
