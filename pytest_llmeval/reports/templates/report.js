(function () {
  "use strict";
  // Progressive enhancement: without JavaScript every case is listed and the filters stay hidden.
  var form = document.getElementById("case-filters");
  var table = document.getElementById("cases-table");
  if (!form || !table || !table.tBodies.length) { return; }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
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
    if (count) { count.textContent = "Showing " + shown + " of " + rows.length + " cases"; }
  }

  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) { event.preventDefault(); apply(); });
  form.hidden = false;
  apply();
}());
