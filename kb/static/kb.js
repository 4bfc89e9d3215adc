// Small progressive enhancements; every page works without this file.
document.addEventListener("DOMContentLoaded", function () {
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
