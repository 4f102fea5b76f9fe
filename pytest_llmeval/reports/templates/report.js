(function () {
  "use strict";
  // Progressive enhancement: without JavaScript every case is listed (in file order) and the
  // filters stay hidden.
  var form = document.getElementById("case-filters");
  var table = document.getElementById("cases-table");
  if (!form || !table || !table.tBodies.length) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var texts = rows.map(function (row) { return row.textContent.toLowerCase(); });
  var tags = rows.map(function (row) {
    try { return JSON.parse(row.getAttribute("data-tags") || "[]"); } catch (e) { return []; }
  });
  var search = document.getElementById("case-search");
  var tagSelect = document.getElementById("case-tag");
  var count = document.getElementById("case-count");

  function apply() {
    var checked = form.querySelector("input[name=outcome]:checked");
    var outcome = checked ? checked.value : "";
    var tag = tagSelect ? tagSelect.value : "";
    var query = search ? search.value.trim().toLowerCase() : "";
    var shown = 0;
    rows.forEach(function (row, i) {
      var ok = (!outcome || row.getAttribute("data-outcome") === outcome) &&
        (!tag || tags[i].indexOf(tag) !== -1) &&
        (!query || texts[i].indexOf(query) !== -1);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    if (count) {
      count.textContent = "Showing " + shown + " of " + rows.length +
        (rows.length === 1 ? " case" : " cases");
    }
  }

  // Sorting: a header with data-sort-type becomes a button; each cell carries its sort key in
  // data-sort (numbers as plain decimals, "" for none, which sorts last either way).
  var headers = table.tHead ? Array.prototype.slice.call(table.tHead.rows[0].cells) : [];

  function sortKey(row, column) {
    var cell = row.cells[column];
    return cell ? (cell.getAttribute("data-sort") || "") : "";
  }

  function sortBy(column) {
    var th = headers[column];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var numeric = th.getAttribute("data-sort-type") === "number";
    headers.forEach(function (h) {
      if (h.hasAttribute("aria-sort")) { h.setAttribute("aria-sort", "none"); }
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var order = rows.map(function (row, i) { return i; });
    order.sort(function (a, b) {
      var x = sortKey(rows[a], column);
      var y = sortKey(rows[b], column);
      if (x === "" || y === "") { return x === y ? a - b : (x === "" ? 1 : -1); }
      var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return (ascending ? c : -c) || a - b;
    });
    order.forEach(function (i) { body.appendChild(rows[i]); });
  }

  headers.forEach(function (th, column) {
    if (!th.hasAttribute("data-sort-type")) { return; }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    button.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    th.setAttribute("aria-sort", "none");
    button.addEventListener("click", function () { sortBy(column); });
  });

  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) { event.preventDefault(); apply(); });
  form.hidden = false;
  apply();
}());
