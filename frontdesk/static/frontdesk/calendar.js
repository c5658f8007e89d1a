/* The calendar's gestures (frontdesk/templates/frontdesk/calendar.html), on top of plain links and forms.
 *
 * Booking from a cell: an empty cell is a link to the booking steps (calendar/book/...). Here
 * it opens them in a dialog instead, asking with HX-Request so each step answers with a
 * fragment: find the patient or register one, then the booking page's own form, whose live
 * check htmx runs against the booking page's view. A step's links marked data-in-place and its
 * forms stay in the dialog; when a booking is made the answer says so (data-done), the dialog
 * closes and the grid is fetched again for the same day.
 *
 * Dragging: dropping an appointment on a cell changes nothing: it asks the reschedule page's
 * dry run (the same panel as the Move page) and shows its answer in a dialog. A refused move
 * leaves the card where it was, with the reasons and the earliest date; an allowed one offers
 * the panel's "Move to ..." button, which is the confirmation. Each card's "Move" link is the
 * keyboard path to the same check.
 */
(function () {
  "use strict";
  var table = document.getElementById("calendar");
  var moveDialog = document.getElementById("cal-dialog");
  var moveBody = document.getElementById("cal-dialog-body");
  var bookDialog = document.getElementById("book-dialog");
  var bookBody = document.getElementById("book-dialog-body");
  var status = document.getElementById("cal-status");
  if (!table || !moveDialog || !bookDialog) { return; }
  var dragged = null;
  var opener = null;  // the cell link that opened the booking dialog, to return focus to

  // --- Fragments in a dialog ------------------------------------------------------------------

  function show(body, html) {
    body.innerHTML = html;
    // Out-of-band field errors belong to a page's form; a fragment shown here carries its own.
    body.querySelectorAll("[hx-swap-oob]").forEach(function (n) { n.remove(); });
    if (window.htmx) { window.htmx.process(body); }
    var done = body.querySelector("[data-done]");
    if (done) { finished(done); }
    return done;  // null: a step to go on with
  }

  function ask(body, url, options) {
    var init = options || {};
    init.credentials = "same-origin";
    // As htmx does: the page it is asked from, so a session that ended comes back here after signing in.
    init.headers = {"HX-Request": "true", "HX-Current-URL": window.location.href};
    body.setAttribute("aria-busy", "true");
    return fetch(url, init).then(function (response) {
      // Told to go elsewhere as a whole (the session ended, two-step sign-in is due): go, not draw it here.
      var away = response.headers.get("HX-Redirect");
      if (away) { window.location.assign(away); return new Promise(function () {}); }
      return response.text();
    }).then(function (html) {
      body.removeAttribute("aria-busy");
      return show(body, html);
    }).catch(function () {
      body.removeAttribute("aria-busy");
      body.textContent = "The clinic did not answer; nothing was changed. Try again, or use the page without this window.";
      return false;
    });
  }

  // Where a keyboard user goes on in a step: a field in error, the step's marked choice, its first field.
  var FOCUS_ORDER = ["[aria-invalid='true']", "[data-focus]", "[autofocus]", "select, input:not([type='hidden'])", "button"];

  function focusFirst(body) {
    for (var i = 0; i < FOCUS_ORDER.length; i++) {
      var target = body.querySelector(FOCUS_ORDER[i]);
      if (target) { target.focus(); return; }
    }
  }

  function wire(body) {
    body.addEventListener("click", function (event) {
      var link = event.target.closest && event.target.closest("a[data-in-place]");
      if (!link || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
      event.preventDefault();
      ask(body, link.dataset.inPlace).then(function (done) { if (!done) { focusFirst(body); } });
    });
    body.addEventListener("submit", function (event) {
      var form = event.target;
      // The booking form's live check is htmx's (hx-get); a dialog's own close button is the browser's.
      if (event.defaultPrevented || form.hasAttribute("hx-get") || form.method === "dialog") { return; }
      event.preventDefault();
      var data = new FormData(form);
      if (event.submitter && event.submitter.name) { data.append(event.submitter.name, event.submitter.value); }
      var request = form.method === "post"
        ? ask(body, form.action, {method: "POST", body: data})
        : ask(body, form.action.split("?")[0] + "?" + new URLSearchParams(data).toString());
      request.then(function (done) { if (!done) { focusFirst(body); } });
    });
  }
  wire(bookBody);
  wire(moveBody);

  // --- Booking from a cell -------------------------------------------------------------------

  table.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.cal-free");
    // A new tab or window keeps the page of its own.
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button > 0) { return; }
    event.preventDefault();
    opener = link;
    moveBody.textContent = "";
    bookBody.textContent = "Loading…";
    if (!bookDialog.open) { bookDialog.showModal(); }
    ask(bookBody, link.href).then(function () { focusFirst(bookBody); });
  });
  // On a phone the check sits below the form: bring a fresh verdict into view (only if it is not).
  bookBody.addEventListener("htmx:afterSwap", function (event) {
    var verdict = event.target.querySelector && event.target.querySelector(".verdict-box");
    if (verdict) { verdict.scrollIntoView({block: "nearest"}); }
  });
  bookDialog.addEventListener("close", function () {
    bookBody.textContent = "";
    if (opener && document.body.contains(opener)) { opener.focus(); }
  });

  // A booking or a move made in a dialog: close it, fetch the grid again for this day, say what happened.
  function finished(done) {
    var message = done.innerHTML;
    var appointment = done.dataset.done;
    opener = null;
    [bookDialog, moveDialog].forEach(function (d) { if (d.open) { d.close(); } });
    refresh().then(function () {
      status.innerHTML = message;
      var card = table.querySelector("[data-appointment='" + appointment + "'] a");
      (card || status.querySelector("a") || table).focus();
    });
  }

  function refresh() {
    return fetch(window.location.href, {credentials: "same-origin"}).then(function (response) {
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      var grid = fresh.getElementById("calendar");
      var region = fresh.querySelector(".cal-scroll");
      if (grid) { table.innerHTML = grid.innerHTML; }
      if (region) { table.parentNode.setAttribute("aria-label", region.getAttribute("aria-label")); }
    });
  }

  // --- Moving by dragging --------------------------------------------------------------------

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
    bookBody.textContent = "";
    moveBody.textContent = "Checking…";
    delete moveDialog.dataset.outcome;
    if (!moveDialog.open) { moveDialog.showModal(); }
    ask(moveBody, card.dataset.checkUrl + "?" + query.toString()).then(function (answer) {
      if (answer === false) { moveDialog.dataset.outcome = "error"; }
      if (answer !== null || !moveDialog.open) { return; }
      var allowed = moveBody.querySelector("form.book-now");
      moveDialog.dataset.outcome = allowed ? "allowed" : "refused";
      document.getElementById("cal-dialog-title").textContent =
        allowed ? "Move this appointment?" : "This move is not possible";
      (allowed ? allowed.querySelector("button") : document.getElementById("cal-dialog-close")).focus();
    });
  }
})();
