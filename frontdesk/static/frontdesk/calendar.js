/* Dragging on the calendar (frontdesk/templates/frontdesk/calendar.html).
 *
 * Dropping an appointment on a cell changes nothing: it asks the reschedule page's dry run
 * (the same panel as the Move page) and shows its answer in a dialog. A refused move leaves
 * the card where it was, with the reasons and the earliest date; an allowed one offers the
 * panel's "Move to ..." button, which is the confirmation. Each card's "Move" link is the
 * keyboard path to the same check.
 */
(function () {
  "use strict";
  var table = document.getElementById("calendar");
  var dialog = document.getElementById("cal-dialog");
  var body = document.getElementById("cal-dialog-body");
  if (!table || !dialog) { return; }
  var dragged = null;

  table.addEventListener("dragstart", function (event) {
    var card = event.target.closest && event.target.closest("[data-appointment]");
    if (!card) { return; }
    dragged = card;
    card.classList.add("cal-appt--dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.dataset.appointment);
  });
  table.addEventListener("dragend", function () {
    if (dragged) { dragged.classList.remove("cal-appt--dragging"); }
    table.querySelectorAll(".cal-cell--target").forEach(function (c) { c.classList.remove("cal-cell--target"); });
  });
  table.addEventListener("dragover", function (event) {
    var cell = event.target.closest && event.target.closest("td[data-time]");
    if (!cell || !dragged) { return; }
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    table.querySelectorAll(".cal-cell--target").forEach(function (c) { c.classList.remove("cal-cell--target"); });
    cell.classList.add("cal-cell--target");
  });
  table.addEventListener("drop", function (event) {
    var cell = event.target.closest && event.target.closest("td[data-time]");
    if (!cell || !dragged) { return; }
    event.preventDefault();
    var card = dragged;
    dragged = null;
    check(card, cell);
  });

  function check(card, cell) {
    var query = new URLSearchParams({date: cell.dataset.date, time: cell.dataset.time,
                                     practitioner: cell.dataset.practitioner});
    body.textContent = "Checking…";
    if (!dialog.open) { dialog.showModal(); }
    fetch(card.dataset.checkUrl + "?" + query.toString(), {
      headers: {"HX-Request": "true"}, credentials: "same-origin"
    }).then(function (response) {
      return response.text().then(function (html) { return {ok: response.ok, html: html}; });
    }).then(function (answer) {
      body.innerHTML = answer.html;
      body.querySelectorAll("[hx-swap-oob]").forEach(function (n) { n.remove(); });
      var allowed = body.querySelector("form.book-now");
      dialog.dataset.outcome = allowed ? "allowed" : "refused";
      document.getElementById("cal-dialog-title").textContent =
        allowed ? "Move this appointment?" : "This move is not possible";
      if (window.htmx) { window.htmx.process(body); }
      (allowed ? allowed.querySelector("button") : document.getElementById("cal-dialog-close")).focus();
    }).catch(function () {
      body.textContent = "The check did not answer; nothing was changed. Use the Move link instead.";
      dialog.dataset.outcome = "error";
    });
  }
})();
