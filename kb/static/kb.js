// Small progressive enhancements; every page works without this file.
document.addEventListener("DOMContentLoaded", function () {
  // A 自己点検 answer is answered with its result page: make the history entry a plain GET
  // of the same address, so reloading does not ask to send the form again.
  if (document.querySelector("[data-answered]") && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.href);
  }

  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });

  // Checklist picker: show only the items whose text contains every typed word.
  document.querySelectorAll("[data-filter]").forEach(function (input) {
    var picker = document.getElementById(input.dataset.filter);
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      picker.querySelectorAll(".picker-item").forEach(function (item) {
        var text = item.textContent.toLowerCase();
        item.hidden = !words.every(function (word) { return text.indexOf(word) >= 0; });
      });
    });
  });

  // Warn before leaving a report form with unsaved changes.
  document.querySelectorAll("form[data-dirty-guard]").forEach(function (form) {
    var dirty = false;
    form.addEventListener("input", function () { dirty = true; });
    form.addEventListener("submit", function () { dirty = false; });
    window.addEventListener("beforeunload", function (event) {
      if (dirty) { event.preventDefault(); event.returnValue = ""; }
    });
  });
});

// While a report is being written, show similar past cases beside the form.
document.addEventListener("DOMContentLoaded", function () {
  var panel = document.querySelector("[data-similar-url]");
  if (!panel) { return; }
  var source = document.getElementById(panel.dataset.similarSource);
  var list = panel.querySelector("[data-similar-list]");
  var empty = panel.querySelector("[data-similar-empty]");
  var title = document.getElementById("title");
  var timer = null;
  var last = "";

  function render(hits) {
    list.textContent = "";
    hits.forEach(function (hit) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = hit.url;
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = hit.title;
      item.appendChild(link);
      hit.countermeasures.forEach(function (text) {
        var line = document.createElement("small");
        line.textContent = "対策：" + text;
        item.appendChild(document.createElement("br"));
        item.appendChild(line);
      });
      list.appendChild(item);
    });
    empty.hidden = hits.length > 0;
  }

  function lookup() {
    var text = ((title && title.value) || "") + "\n" + source.value;
    if (text.trim().length < 8 || text === last) { return; }
    last = text;
    fetch(panel.dataset.similarUrl + "?text=" + encodeURIComponent(text.slice(0, 2000)),
          {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : {hits: []}; })
      .then(function (data) { render(data.hits); })
      .catch(function () { /* the panel is a help, never an obstacle */ });
  }

  [source, title].forEach(function (field) {
    if (!field) { return; }
    field.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(lookup, 600);
    });
  });
  lookup();
});
