/* A field's error, swapped in out of band by the live check (frontdesk/_check_panel.html), marks its field.
 *
 * The live check replaces only each field's `<id>-error` element, never the inputs (that would take the
 * focus and a half-typed date from the user). So the field itself is marked here, as the full page marks it
 * on the server (frontdesk/_field.html): aria-invalid="true" and the field--invalid class while the error
 * says data-invalid="true", aria-describedby naming the error, and both cleared when an error comes back
 * without it.
 */
(function () {
  "use strict";

  function mark(error) {
    if (!error.classList || !error.classList.contains("field-error") || !/-error$/.test(error.id)) { return; }
    var invalid = error.getAttribute("data-invalid") === "true";
    var wrapper = error.closest(".field");
    if (wrapper) { wrapper.classList.toggle("field--invalid", invalid); }
    var input = document.getElementById(error.id.slice(0, -"-error".length));
    if (!input) { return; }  // a group of choices: the fieldset's class says it
    if (invalid) {
      input.setAttribute("aria-invalid", "true");
      var described = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
      if (described.indexOf(error.id) < 0) {
        described.push(error.id);
        input.setAttribute("aria-describedby", described.join(" "));
      }
    } else {
      input.removeAttribute("aria-invalid");
    }
  }

  document.addEventListener("htmx:oobAfterSwap", function (event) { mark(event.target); });
})();
