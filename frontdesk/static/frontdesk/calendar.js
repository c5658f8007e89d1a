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
 *
 * Moving by keyboard: the table is a WAI-ARIA grid (https://www.w3.org/WAI/ARIA/apg/patterns/grid/),
 * one Tab stop whatever its size, the arrow keys between cells (below, "Moving through the grid").
 * Without this script it stays a plain table of links.
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
    // A grid that could not be fetched again (the network, a session that ended) stays as it was: what was done
    // is still said, and the page's next load shows it.
    refresh().catch(function () { return null; }).then(function () {
      status.innerHTML = message;
      // The new card; a booking on another day has none here, so its link in the status line; else the cell.
      var card = table.querySelector("[data-appointment='" + appointment + "'] a");
      var next = card || status.querySelector("a") || (current && target(current));
      if (next) { next.focus(); }
    });
  }

  function refresh() {
    return fetch(window.location.href, {credentials: "same-origin"}).then(function (response) {
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      var grid = fresh.getElementById("calendar");
      var region = fresh.querySelector(".cal-scroll");
      var keep = remember();
      if (grid) { table.innerHTML = grid.innerHTML; }
      if (region) { table.parentNode.setAttribute("aria-label", region.getAttribute("aria-label")); }
      prepare(keep);
    });
  }

  // --- Moving through the grid ---------------------------------------------------------------
  //
  // A roving tabindex: exactly one element in the table has tabindex 0, the current cell's focus
  // target (its booking link, its card's link, or the cell itself when it has neither: time off, a
  // time the clocks skip); every other link and cell has -1, so Tab enters the grid once and leaves
  // it at once, and comes back to the cell it left. Rowspans make the table ragged, so the cells are
  // laid out in a matrix of quarter hours by columns (a card fills every row it spans), and the row
  // the user is on is kept apart from the cell: right from the middle of a long card, then left,
  // comes back to the same quarter hour.

  var HOUR = 4;  // rows PageUp and PageDown move: an hour of quarter hours
  var matrix = [];  // matrix[row][column]: the td covering that quarter hour of that column
  var place = new Map();  // td -> {row, col, rows}: its first row, its column, the rows it spans
  var where = {row: 0, col: 0};  // the current position (a row within the current card's span)
  var current = null;  // the current td

  // What takes the focus in a cell: the one control a click on it would use, else the cell itself.
  function target(td) {
    return td.querySelector("a.cal-free, a.cal-appt__link") || td;
  }

  function layout() {
    matrix = [];
    place = new Map();
    var body = table.tBodies[0];
    if (!body) { return; }
    Array.prototype.forEach.call(body.rows, function (tr, r) {
      matrix[r] = matrix[r] || [];
      var c = 0;
      Array.prototype.forEach.call(tr.cells, function (td) {
        if (td.tagName !== "TD") { return; }  // the row's time heading
        while (matrix[r][c]) { c++; }
        var rows = Math.min(Math.max(1, td.rowSpan), body.rows.length - r);
        for (var k = 0; k < rows; k++) { (matrix[r + k] = matrix[r + k] || [])[c] = td; }
        place.set(td, {row: r, col: c, rows: rows});
        c++;
      });
    });
  }

  // What finds a cell again in a fresh copy of the grid: its appointment, or its practitioner and time.
  function keyOf(td) {
    var card = td.querySelector("[data-appointment]");
    if (card) { return "[data-appointment='" + card.dataset.appointment + "']"; }
    return "td[data-date='" + td.dataset.date + "'][data-time='" + td.dataset.time +
      "'][data-practitioner='" + td.dataset.practitioner + "']";
  }

  function remember() {
    return current ? {key: keyOf(current), row: where.row, col: where.col} : null;
  }

  // Where Tab first lands: the current quarter hour when the grid shows it (today's column in a week), else the top left.
  function start() {
    var rows = table.tBodies[0] ? Array.prototype.slice.call(table.tBodies[0].rows) : [];
    var heads = table.tHead ? Array.prototype.slice.call(table.tHead.rows[0].cells, 1) : [];
    var now = table.querySelector("tr.cal-row--now");
    var today = heads.findIndex(function (th) { return th.classList.contains("cal-head--today"); });
    return {row: now ? Math.max(0, rows.indexOf(now)) : 0, col: Math.max(0, today)};
  }

  // After the page loads or the grid is fetched again: every control out of the Tab order but one.
  function prepare(keep) {
    layout();
    current = null;
    if (!place.size) {  // no practitioners (any more): no cells to move between, a plain table
      table.removeAttribute("role");
      table.removeAttribute("aria-describedby");
      var help = document.getElementById("cal-keys");
      if (help) { help.hidden = true; }
      return;
    }
    table.setAttribute("role", "grid");
    table.setAttribute("aria-describedby", "cal-keys");
    var keys = document.getElementById("cal-keys");
    if (keys) { keys.hidden = false; }
    table.querySelectorAll("tbody a, tbody button, tbody [tabindex]").forEach(function (n) { n.tabIndex = -1; });
    var headings = table.tHead ? table.tHead.rows[0].cells : [];
    place.forEach(function (at, td) {
      if (target(td) !== td) { return; }
      // Nothing to do here, but a screen reader should hear what it is and when: "14:15, Priya Shah: Training".
      td.tabIndex = -1;
      var heading = headings[at.col + 1] ? headings[at.col + 1].textContent.trim() : "";
      td.setAttribute("aria-label", [td.dataset.time, heading].filter(Boolean).join(", ") + ": " +
        td.textContent.trim() + " (not bookable)");
    });
    var found = keep && table.querySelector(keep.key);
    var td = found && found.closest("td");
    if (td && place.has(td)) { select(td, keep.row); return; }
    var at = keep || start();
    var row = matrix[Math.min(at.row, matrix.length - 1)];
    if (row && row.length) { select(row[Math.min(at.col, row.length - 1)], at.row); }
  }

  function select(td, row) {
    var at = place.get(td);
    if (!at) { return null; }
    if (current && current !== td) { target(current).tabIndex = -1; }
    current = td;
    where = {row: row >= at.row && row < at.row + at.rows ? row : at.row, col: at.col};
    var focusable = target(td);
    focusable.tabIndex = 0;
    return focusable;
  }

  function go(row, col) {
    if (!matrix.length) { return; }
    row = Math.max(0, Math.min(row, matrix.length - 1));
    var cells = matrix[row];
    var td = cells && cells[Math.max(0, Math.min(col, cells.length - 1))];
    if (!td) { return; }
    var focusable = select(td, row);
    focusable.focus({preventScroll: true});
    focusable.scrollIntoView({block: "nearest", inline: "nearest"});
  }

  // The first row above (step -1) or below (+1) that is another cell in the column; the row itself at the edge.
  function beyond(row, col, step) {
    var here = matrix[row][col];
    var r = row;
    while (r >= 0 && r < matrix.length && matrix[r][col] === here) { r += step; }
    return r < 0 || r >= matrix.length ? row : r;
  }

  // An hour up or down; when that is still the same card, the cell past it.
  function hourAway(row, col, step) {
    var r = Math.max(0, Math.min(row + step * HOUR, matrix.length - 1));
    return matrix[r][col] === matrix[row][col] ? beyond(row, col, step) : r;
  }

  table.addEventListener("focusin", function (event) {
    var td = event.target.closest && event.target.closest("td");
    if (td && td !== current && place.has(td)) { select(td, where.row); }
  });

  table.addEventListener("keydown", function (event) {
    var td = event.target.closest && event.target.closest("td");
    if (event.altKey || event.metaKey || !td || td !== current) { return; }
    var row = where.row, col = where.col;
    var last = matrix.length - 1;
    // A card's Move and "Also" links, reached with F2: Tab goes between them, F2 or Escape back to the card.
    var inner = Array.prototype.filter.call(td.querySelectorAll("a"), function (a) { return a !== target(td); });
    var inside = inner.indexOf(event.target);
    switch (event.key) {
      case "ArrowRight": go(row, col + 1); break;
      case "ArrowLeft": go(row, col - 1); break;
      case "ArrowDown": go(beyond(row, col, 1), col); break;
      case "ArrowUp": go(beyond(row, col, -1), col); break;
      case "PageDown": if (event.ctrlKey) { return; } go(hourAway(row, col, 1), col); break;  // Ctrl: the browser's tabs
      case "PageUp": if (event.ctrlKey) { return; } go(hourAway(row, col, -1), col); break;
      case "Home": if (event.ctrlKey) { go(0, 0); } else { go(row, 0); } break;
      case "End": if (event.ctrlKey) { go(last, matrix[last].length - 1); } else { go(row, matrix[row].length - 1); } break;
      case " ":
        // As Enter: a link's click (the booking dialog, the appointment); on a cell without one, nothing (no scrolling).
        if (event.target.tagName === "A") { event.target.click(); }
        break;
      case "F2":
        if (inside >= 0) { target(td).focus(); } else if (inner.length) { inner[0].focus(); } else { return; }
        break;
      case "Escape":
        if (inside < 0) { return; }
        target(td).focus();
        break;
      case "Tab":
        if (inside < 0) { return; }
        inner[(inside + (event.shiftKey ? inner.length - 1 : 1)) % inner.length].focus();
        break;
      default: return;
    }
    event.preventDefault();
  });

  prepare(null);

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
    // A cell in the hour the clocks go back over (free, time off or not) names its instant: its date and wall time
    // happen twice.
    var exact = cell.querySelector("[data-start-at]");
    var query = new URLSearchParams(exact
      ? {start_at: exact.dataset.startAt, practitioner: cell.dataset.practitioner}
      : {date: cell.dataset.date, time: cell.dataset.time, practitioner: cell.dataset.practitioner});
    // Where the card was when this grid was drawn: a move from a grid older than a colleague's move of the same
    // visit is refused (409) instead of undoing theirs unseen.
    if (card.dataset.drawn) { query.set("from_start_at", card.dataset.drawn); }
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
