/* Errors on a page the server drew after a form was sent: a summary at the top that takes the focus.
 *
 * After a refused full-page submission (a POST) the focus would start at the top of a long page, the errors far below.
 * As the GOV.UK error summary does: "There is a problem", each error a link to its field (the link focuses the
 * field), the form's own messages first, and the focus moved to the summary so a screen reader reads it. A page
 * answering a POST with only a message (a refusal, no field to fix) moves the focus to that message. Built from
 * what the server drew (frontdesk/_field.html: .field--invalid, <id>-error, .field-error__text), so every form
 * page has it and none has to ask for it. The live check's errors (swapped in while typing) never move focus.
 *
 * A field's error, swapped in out of band by the live check (frontdesk/_check_panel.html), marks its field.
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

  function labelText(wrapper) {
    var label = wrapper.querySelector("label, legend");
    if (!label) { return ""; }
    var copy = label.cloneNode(true);
    copy.querySelectorAll(".required, input, select, textarea").forEach(function (n) { n.remove(); });
    return copy.textContent.replace(/\s+/g, " ").trim();
  }

  function summaryItem(text, target) {
    var item = document.createElement("li");
    if (!target) { item.textContent = text; return item; }
    var link = document.createElement("a");
    link.href = "#" + target.id;
    link.textContent = text;
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var wrapper = target.closest(".field") || target;
      wrapper.scrollIntoView({block: "center"});
      target.focus();
    });
    item.appendChild(link);
    return item;
  }

  function summarize() {
    var main = document.getElementById("main");
    // Only a page answering a sent form: a search or a link with odd values in its address does not take the focus.
    if (!main || !document.body.hasAttribute("data-answer-to-post") || document.getElementById("error-summary")) {
      return;
    }
    var alerts = Array.prototype.slice.call(main.querySelectorAll(".alert--error"));
    var fields = [];
    main.querySelectorAll(".field--invalid .field-error").forEach(function (error) {
      var texts = Array.prototype.map.call(error.querySelectorAll(".field-error__text"), function (t) {
        return t.textContent.trim();
      }).filter(Boolean);
      if (!texts.length || !/-error$/.test(error.id)) { return; }
      var wrapper = error.closest(".field");
      var target = document.getElementById(error.id.slice(0, -"-error".length)) ||
        (wrapper && wrapper.querySelector("input, select, textarea"));
      var label = wrapper ? labelText(wrapper) : "";
      fields.push(summaryItem((label ? label + ": " : "") + texts.join(" "), target));
    });
    if (!fields.length) {
      if (alerts.length) {
        alerts[0].setAttribute("tabindex", "-1");
        alerts[0].focus();
      }
      return;
    }
    var box = document.createElement("div");
    box.id = "error-summary";
    box.className = "error-summary";
    box.setAttribute("tabindex", "-1");
    box.setAttribute("aria-labelledby", "error-summary-title");
    var heading = document.createElement("h2");
    heading.id = "error-summary-title";
    heading.textContent = "There is a problem";
    var list = document.createElement("ul");
    alerts.forEach(function (alert) { list.appendChild(summaryItem(alert.textContent.replace(/\s+/g, " ").trim())); });
    fields.forEach(function (item) { list.appendChild(item); });
    box.appendChild(heading);
    box.appendChild(list);
    main.insertBefore(box, main.firstChild);
    box.focus();
  }

  summarize();  // deferred: the page is parsed
})();
